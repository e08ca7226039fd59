import { Type, type Static } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { DLQ_REPAIR_OUTCOMES, DLQ_REPAIR_STATUSES } from '../../journal/kinds';
import { loadLineageKey, type LineageKey } from '../../journal/lineage';
import { previewRepairs, type RepairEdit } from '../../journal/repair';
import { countDlq, dlqPage, type DlqFilter } from '../../repository/event-dlq';
import { getRepair, repairCounts, repairOutcomes } from '../../repository/dlq-repair';
import type { Config } from '../../shared/config';
import type { Pool } from '../../shared/db';
import { dlqRepairWorkflow } from '../../workflows';
import { MAX_REPAIR_ENTRIES } from '../../workflows/definitions';
import { DlqFilterFields, dlqFilterOf, type DlqFilterParams } from '../dlq-filter';
import { httpError } from '../http-error';
import { Id, NullableInteger, NullableString, StringEnum, Timestamp, errorResponses } from '../schemas';
import { startForRequest } from '../start-workflow';

/** Entries a preview shows (checked and tried against the journal, then rolled back). */
export const PREVIEW_LIMIT = 100;

const Pointer = Type.String({ maxLength: 1000, pattern: '^(/.*)?$' });
/** One RFC 6902 operation. */
const Operation = Type.Union([
  Type.Object(
    { op: StringEnum(['add', 'replace', 'test'] as const), path: Pointer, value: Type.Unknown() },
    { additionalProperties: false },
  ),
  Type.Object({ op: Type.Literal('remove'), path: Pointer }, { additionalProperties: false }),
  Type.Object(
    { op: StringEnum(['move', 'copy'] as const), from: Pointer, path: Pointer },
    { additionalProperties: false },
  ),
]);

const RepairBody = Type.Object(
  {
    ids: Type.Optional(Type.Array(Id, { minItems: 1, maxItems: MAX_REPAIR_ENTRIES, uniqueItems: true })),
    filter: Type.Optional(Type.Object(DlqFilterFields, { additionalProperties: false })),
    patch: Type.Optional(Type.Array(Operation, { minItems: 1, maxItems: 100 })),
    value: Type.Optional(Type.Object({}, { additionalProperties: true })),
    dry_run: Type.Optional(Type.Boolean()),
    reason: Type.Optional(Type.String({ minLength: 1, maxLength: 500 })),
  },
  { additionalProperties: false },
);

const Preview = Type.Object({
  id: Type.Integer(),
  would_journal: Type.Boolean(),
  error: Type.Optional(Type.String()),
  before: Type.Unknown(),
  after: Type.Unknown(),
  diff: Type.Array(Type.Unknown()),
});
const DryRun = Type.Object({
  status: Type.Literal('dry_run'),
  matched: Type.Integer(),
  previewed: Type.Integer(),
  would_journal: Type.Integer(),
  refused: Type.Integer(),
  unknown_ids: Type.Array(Type.Integer()),
  entries: Type.Array(Preview),
});
const Counts = {
  journaled: Type.Integer(),
  invalid: Type.Integer(),
  skipped: Type.Integer(),
};
const Applied = Type.Object({
  status: Type.String(),
  repair_id: Type.String(),
  workflow_id: Type.String(),
  status_url: Type.String(),
  ...Object.fromEntries(Object.entries(Counts).map(([k, v]) => [k, Type.Optional(v)])),
});
const Repair = Type.Object({
  id: Type.String(),
  requested_by: Type.String(),
  tenant_id: NullableString,
  edit: Type.Unknown(),
  selection: Type.Unknown(),
  reason: NullableString,
  status: StringEnum(DLQ_REPAIR_STATUSES),
  error: NullableString,
  created_at: Timestamp,
  finished_at: Type.Union([Timestamp, Type.Null()]),
  counts: Type.Object(Counts),
  entries: Type.Array(
    Type.Object({
      dlq_id: Type.Integer(),
      outcome: StringEnum(DLQ_REPAIR_OUTCOMES),
      journal_id: NullableInteger,
      error: NullableString,
    }),
  ),
});
const more = { 403: Type.Ref('ErrorBody'), 404: Type.Ref('ErrorBody'), 503: Type.Ref('ErrorBody') };

/** Edit-and-retry of dead letters: preview, then a durable apply (dlqRepairWorkflow), and its audit. */
const dlqRepairRoutes: FastifyPluginAsyncTypebox<{
  pool: Pool;
  config: Pick<Config, 'temporal' | 'api' | 'ingest' | 'lineageKey'>;
}> = async (app, { pool, config }) => {
  let lineageKey: Promise<LineageKey> | undefined;
  const parseOptions = async () => {
    lineageKey ??= loadLineageKey(pool, config.lineageKey, 5_000).catch((err: unknown) => {
      lineageKey = undefined;
      throw err;
    });
    return { maxBytes: config.ingest.maxEventBytes, lineageKey: await lineageKey };
  };

  app.post(
    '/dlq/repair',
    {
      config: { replayLimited: true },
      schema: {
        tags: ['dlq'],
        summary:
          'Edit and retry dead letters (by ids or a /dlq filter) with a JSON Patch or a replacement value: dry_run ' +
          'previews each entry (before, after, diff, would it journal); otherwise a dlqRepairWorkflow applies it',
        body: RepairBody,
        response: { 200: Type.Union([DryRun, Applied]), 202: Applied, ...errorResponses, ...more },
      },
    },
    async (request, reply) => {
      const body = request.body;
      const edit = editOf(body);
      const selection = selectionOf(request, body);
      const { matched, maxId } = await countDlq(pool, selection);
      if (matched > MAX_REPAIR_ENTRIES) {
        throw httpError(400, `The selection matches ${matched} entries; a repair takes at most ${MAX_REPAIR_ENTRIES}`);
      }
      const tenantScope = request.principal.tenantId;
      if (body.dry_run) {
        const entries = await dlqPage(pool, selection, { after: 0, maxId, limit: PREVIEW_LIMIT });
        const ctx = { repairId: 'dlq-repair-preview', parse: await parseOptions(), tenantScope };
        const previews = await previewRepairs(pool, entries, edit, ctx);
        const found = new Set(entries.map((e) => e.id));
        const would = previews.filter((p) => p.would_journal).length;
        return {
          status: 'dry_run' as const,
          matched,
          previewed: previews.length,
          would_journal: would,
          refused: previews.length - would,
          unknown_ids: matched > PREVIEW_LIMIT ? [] : (body.ids ?? []).filter((id) => !found.has(id)),
          entries: previews.map(({ dlqId, ...p }) => ({ id: dlqId, ...p })),
        };
      }
      if (matched === 0) throw httpError(404, 'No DLQ entry matches the selection');
      const handle = await startForRequest(app, request, config, {
        prefix: 'dlq-repair',
        workflow: dlqRepairWorkflow,
        input: { selection, edit, tenantScope, requestedBy: request.principal.subject, reason: body.reason },
        searchAttributes: [],
      });
      const statusUrl = `/dlq/repairs/${encodeURIComponent(handle.workflowId)}`;
      const accepted = { repair_id: handle.workflowId, workflow_id: handle.workflowId, status_url: statusUrl };
      const result = await reply.workflowResult(handle.result(), config.api.replayWaitMs);
      if (result === undefined) return reply.status(202).send({ status: 'accepted', ...accepted });
      return { ...result, ...accepted };
    },
  );

  app.get(
    '/dlq/repairs/:id',
    {
      schema: {
        tags: ['dlq'],
        summary: 'A repair: its edit, who applied it, its status, and what it did to each entry',
        params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 200 }) }),
        response: { 200: Repair, ...errorResponses, ...more },
      },
    },
    async (request) => {
      const repair = await getRepair(pool, request.params.id);
      const own = request.principal.tenantId;
      if (!repair || (own !== undefined && repair.tenant_id !== own)) {
        throw httpError(404, `Repair ${request.params.id} not found`);
      }
      const [counts, entries] = await Promise.all([repairCounts(pool, repair.id), repairOutcomes(pool, repair.id)]);
      return { ...repair, counts, entries };
    },
  );
};

type Body = Omit<Static<typeof RepairBody>, 'filter' | 'patch'> & { filter?: DlqFilterParams; patch?: unknown[] };

function editOf(body: Body): RepairEdit {
  if ((body.patch === undefined) === (body.value === undefined)) {
    throw httpError(400, 'body must have exactly one of patch (a JSON Patch, RFC 6902) or value (the whole value)');
  }
  // The schema checked each operation's shape (RFC 6902): the patch is one.
  return body.patch
    ? { patch: body.patch as Extract<RepairEdit, { patch: unknown }>['patch'] }
    : { value: body.value! };
}

/** The entries a repair selects: exact ids or a /dlq filter, within the token's tenant. */
function selectionOf(request: FastifyRequest, body: Body): DlqFilter {
  if ((body.ids === undefined) === (body.filter === undefined)) {
    throw httpError(400, 'body must have exactly one of ids or filter (the /dlq filters)');
  }
  if (body.ids) return { ids: body.ids, tenantId: request.principal.tenantId };
  return dlqFilterOf(request, body.filter!);
}

export default dlqRepairRoutes;

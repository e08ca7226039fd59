import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { ArchiveStore } from '../../archive';
import { LIFECYCLE_STATUSES } from '../../journal/kinds';
import { countErasureMatches } from '../../lifecycle/erasure-scan';
import { describeTarget, subjectHash, type ErasureTarget } from '../../lifecycle/erasure-target';
import { releaseErasureClaims, storeErasureSubject } from '../../repository/erasure';
import { pruneErasureClaimsWhileOpen, releaseUnlessRunning } from '../erasure-claims';
import { getLifecycleAudit, listLifecycleAudit, recordLifecycleRequested } from '../../repository/lifecycle-audit';
import { ensureServiceKey } from '../../repository/service-keys';
import type { Config } from '../../shared/config';
import type { Pool } from '../../shared/db';
import { erasureWorkflow } from '../../workflows';
import { httpError } from '../http-error';
import { errorResponses, StringEnum, Timestamp, NullableString } from '../schemas';
import { startForRequest, startWasSent } from '../start-workflow';

/** The service_keys row whose secret salts subject hashes. */
const ERASURE_KEY = 'erasure';

/** Postgres text holds no NUL character: a value with one is a 400, not a database error. */
const NO_NUL = '^[^\\u0000]*$';

const Subject = Type.Object(
  {
    field: Type.String({ minLength: 1, maxLength: 200 }),
    // Long numbers lose digits as JSON numbers: give them as strings.
    // A JSON number beyond 2^53 has already lost digits when it is parsed: only safe integers are taken as numbers.
    value: Type.Union([
      Type.String({ minLength: 1, maxLength: 2000, pattern: NO_NUL }),
      Type.Integer({ minimum: -Number.MAX_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER }),
    ]),
  },
  { additionalProperties: false },
);
const Body = Type.Object(
  {
    tenant_id: Type.Optional(Type.String({ minLength: 1, maxLength: 200, pattern: NO_NUL })),
    subject: Type.Optional(Subject),
    dry_run: Type.Optional(Type.Boolean({ default: true })),
  },
  { additionalProperties: false },
);
const DryRun = Type.Object({
  status: Type.Literal('dry_run'),
  target: Type.String(),
  field: Type.Optional(Type.String()),
  subject_hash: Type.String(),
  counts: Type.Object({
    journal: Type.Object({ rows: Type.Integer() }),
    dlq: Type.Object({ rows: Type.Integer() }),
    archive: Type.Object({ segments: Type.Integer(), rows: Type.Integer(), segments_read: Type.Integer() }),
  }),
});
const Accepted = Type.Object({
  status: Type.Literal('accepted'),
  erasure_id: Type.String(),
  subject_hash: Type.String(),
  status_url: Type.String(),
});
const Audit = Type.Object({
  erasure_id: Type.String(),
  requested_by: NullableString,
  status: StringEnum(LIFECYCLE_STATUSES),
  request: Type.Record(Type.String(), Type.Unknown()),
  actions: Type.Array(Type.Record(Type.String(), Type.Unknown())),
  error: NullableString,
  started_at: Timestamp,
  finished_at: Type.Union([Timestamp, Type.Null()]),
});
const responses = { ...errorResponses, 401: Type.Ref('ErrorBody'), 403: Type.Ref('ErrorBody') };

const statusUrl = (id: string) => `/erasure/${encodeURIComponent(id)}`;
const asAudit = (row: NonNullable<Awaited<ReturnType<typeof getLifecycleAudit>>>) => ({
  erasure_id: row.workflow_id,
  requested_by: row.requested_by,
  status: row.status,
  request: row.request,
  actions: row.actions,
  error: row.error,
  started_at: row.started_at,
  finished_at: row.finished_at,
});

/**
 * Erasure by tenant or data subject (docs/lifecycle.md, "Erasure"): a dry run counts what would go, per store; a real
 * run starts the erasure workflow. The subject's value goes to Postgres under its salted hash for the workflow to read
 * (never into Temporal), and the audit holds the hash only.
 */
const erasureRoutes: FastifyPluginAsyncTypebox<{
  pool: Pool;
  archive: ArchiveStore;
  config: Pick<Config, 'temporal' | 'erasure'>;
}> = async (app, { pool, archive, config }) => {
  pruneErasureClaimsWhileOpen(app, pool);
  const targetOf = (body: { tenant_id?: string; subject?: { field: string; value: string | number } }) => {
    if ((body.tenant_id === undefined) === (body.subject === undefined)) {
      throw httpError(400, 'body must name either tenant_id (offboarding) or subject {field, value}, not both');
    }
    if (body.tenant_id !== undefined) return { kind: 'tenant', value: body.tenant_id } satisfies ErasureTarget;
    const { field, value } = body.subject!;
    const allowed = config.erasure.subjectFields;
    if (!allowed.includes(field)) {
      throw httpError(
        400,
        `body/subject/field "${field}" is not erasable: ERASURE_SUBJECT_FIELDS allows ${allowed.join(', ')}`,
      );
    }
    return { kind: 'subject', field, value: String(value) } satisfies ErasureTarget;
  };

  app.post(
    '/erasure',
    {
      schema: {
        tags: ['erasure'],
        summary: 'Erase a tenant or a data subject everywhere (journal, DLQ, archive); dry_run (the default) counts',
        body: Body,
        response: { 200: DryRun, 202: Accepted, ...responses, 503: Type.Ref('ErrorBody') },
      },
    },
    async (request, reply) => {
      const target: ErasureTarget = targetOf(request.body);
      const hash = subjectHash(await ensureServiceKey(pool, ERASURE_KEY), target);
      if (request.body.dry_run ?? true) {
        const counts = await countErasureMatches(pool, archive, target);
        return { status: 'dry_run' as const, ...describeTarget(target), subject_hash: hash, counts };
      }
      // The value is claimed by this request (a claim of its own, even when sent again for a workflow another request
      // claimed): released here when its start was never sent, by the workflow when it ends, or by the prune
      // (erasure-claims.ts) once Temporal shows the workflow is not running.
      let claim: { workflowId: string; claimId: string } | undefined;
      const handle = await startForRequest(app, request, config, {
        prefix: 'erasure',
        workflow: erasureWorkflow,
        input: { subjectHash: hash, requestedBy: request.principal.subject },
        searchAttributes: [],
        beforeStart: async (workflowId) => {
          const claimId = await storeErasureSubject(pool, hash, target, workflowId);
          if (claimId) claim = { workflowId, claimId };
        },
      }).catch(async (err: Error) => {
        // Not sent (refused at a stop, Temporal unreachable at connect): nothing runs for this request, and its own
        // claim goes (another request's, for the same workflow or another, stays). One whose start was sent keeps it
        // whatever the answer (a 504 naming the workflow): that erasure needs the value if it started.
        if (claim && !startWasSent(request)) {
          await releaseErasureClaims(pool, hash, [claim.claimId]).catch(() => undefined);
        }
        throw err;
      });
      // Sent again with its Idempotency-Key after its erasure ended, the request is answered with that erasure: the
      // value it stored again is released at once rather than at the next prune.
      if (claim) {
        void releaseUnlessRunning(app, pool, {
          workflowId: claim.workflowId,
          subjectHash: hash,
          claimIds: [claim.claimId],
        });
      }
      // The workflow writes the same row first thing; written here too (if still absent), the status URL answers at once.
      await reply.unlessClosing(
        recordLifecycleRequested(pool, {
          workflowId: handle.workflowId,
          kind: 'erasure',
          requestedBy: request.principal.subject,
          request: { ...describeTarget(target), subject_hash: hash },
        }),
      );
      return reply.status(202).send({
        status: 'accepted',
        erasure_id: handle.workflowId,
        subject_hash: hash,
        status_url: statusUrl(handle.workflowId),
      });
    },
  );

  app.get(
    '/erasure',
    {
      schema: {
        tags: ['erasure'],
        summary: 'Erasures, newest first, from the lifecycle audit (no subject values: hashes and counts)',
        querystring: Type.Object(
          { limit: Type.Integer({ minimum: 1, maximum: 1000, default: 50 }) },
          { additionalProperties: false },
        ),
        response: { 200: Type.Array(Audit), ...responses },
      },
    },
    async (request) => (await listLifecycleAudit(pool, 'erasure', request.query.limit)).map(asAudit),
  );

  app.get(
    '/erasure/:id',
    {
      schema: {
        tags: ['erasure'],
        summary: "One erasure's audit: status, subject hash, counts per store, who and when",
        params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 300, pattern: NO_NUL }) }),
        response: { 200: Audit, ...responses, 404: Type.Ref('ErrorBody') },
      },
    },
    async (request) => {
      const row = await getLifecycleAudit(pool, request.params.id);
      if (!row || row.kind !== 'erasure') throw httpError(404, `Erasure ${request.params.id} not found`);
      return asAudit(row);
    },
  );
};

export default erasureRoutes;

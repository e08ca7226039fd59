import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { BULK_RULES } from '../../journal/dead-letter';
import { DLQ_BULK_ACTIONS, DLQ_STATUSES, type DlqBulkAction } from '../../journal/kinds';
import { countDlqBulk, dlqGroups } from '../../repository/event-dlq';
import type { Config } from '../../shared/config';
import type { Pool } from '../../shared/db';
import { dlqBulkWorkflow } from '../../workflows';
import { MAX_DLQ_BULK_PAGE } from '../../workflows/definitions';
import { replaySearchAttributes } from '../../workflows/search-attributes';
import { DlqFilterFields, dlqFilterOf, dlqFilterParams } from '../dlq-filter';
import { httpError } from '../http-error';
import { recordStarted } from '../route-helpers';
import { StringEnum, errorResponses, NullableString, Timestamp } from '../schemas';
import { startForRequest } from '../start-workflow';

const ByStatus = Type.Object(Object.fromEntries(DLQ_STATUSES.map((s) => [s, Type.Integer()])));
const Group = Type.Object({
  error_class: NullableString,
  topic: Type.String(),
  day: Type.String(),
  count: Type.Integer(),
  by_status: ByStatus,
  oldest: Timestamp,
  newest: Timestamp,
  sample_ids: Type.Array(Type.Integer()),
});
const Filter = Type.Object(DlqFilterFields, { additionalProperties: false });
const DryRun = Type.Object({
  status: Type.Literal('dry_run'),
  action: Type.String(),
  filter: Type.Record(Type.String(), Type.Unknown()),
  /** Entries the action would act on (in the statuses it acts on). */
  eligible: Type.Integer(),
  /** Every entry of the filter, and by status. */
  matched: Type.Integer(),
  by_status: ByStatus,
});
const Accepted = Type.Object({
  status: Type.Literal('accepted'),
  workflow_id: Type.String(),
  status_url: Type.String(),
  eligible: Type.Integer(),
});
const more = { 403: Type.Ref('ErrorBody'), 429: Type.Ref('ErrorBody'), 503: Type.Ref('ErrorBody') };

/** DLQ triage: dead letters grouped by error class, topic and day; bulk actions on a group or any filter. */
const dlqTriageRoutes: FastifyPluginAsyncTypebox<{ pool: Pool; config: Pick<Config, 'temporal'> }> = async (
  app,
  { pool, config },
) => {
  app.get(
    '/dlq/groups',
    {
      schema: {
        tags: ['dlq'],
        summary: 'Dead letters counted per error class, topic and UTC day, largest first, with the newest few ids',
        querystring: Type.Object(
          { ...DlqFilterFields, limit: Type.Integer({ minimum: 1, maximum: 500, default: 100 }) },
          { additionalProperties: false },
        ),
        response: { 200: Type.Array(Group), ...errorResponses, ...more },
      },
    },
    async (request) => dlqGroups(pool, dlqFilterOf(request, request.query), request.query.limit),
  );

  app.post(
    '/dlq/bulk',
    {
      config: { replayLimited: true },
      schema: {
        tags: ['dlq'],
        summary:
          'Retry now, discard (with a reason), park or unpark every dead letter of a filter (a group: error_class, ' +
          'topic, day). A dry run (the default) counts them; dry_run:false starts a dlqBulkWorkflow',
        body: Type.Object(
          {
            action: StringEnum(DLQ_BULK_ACTIONS),
            filter: Type.Optional(Filter),
            reason: Type.Optional(Type.String({ minLength: 1, maxLength: 500 })),
            dry_run: Type.Boolean({ default: true }),
            page_size: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_DLQ_BULK_PAGE })),
          },
          { additionalProperties: false },
        ),
        response: { 200: DryRun, 202: Accepted, ...errorResponses, ...more },
      },
    },
    async (request, reply) => {
      const body = request.body;
      const action = body.action as DlqBulkAction;
      if (action === 'discard' && !body.dry_run && !body.reason?.trim()) {
        throw httpError(400, 'body/reason is required to discard dead letters: say why they need no retry');
      }
      const filter = dlqFilterOf(request, body.filter ?? {});
      const count = await countDlqBulk(pool, filter, BULK_RULES[action].from);
      if (body.dry_run) {
        return { status: 'dry_run' as const, action, filter: dlqFilterParams(filter), ...count };
      }
      const requestedBy = request.principal.subject;
      const handle = await startForRequest(app, request, config, {
        prefix: `dlq-bulk-${action}`,
        workflow: dlqBulkWorkflow,
        input: {
          action,
          filter,
          reason: body.reason,
          source: 'operator_api',
          requestedBy,
          tenantScope: request.principal.tenantId,
          pageSize: body.page_size,
        },
        searchAttributes: replaySearchAttributes({
          kind: 'dlq_bulk',
          source: 'operator_api',
          tenantId: filter.tenantId,
          topic: filter.topic,
        }),
      });
      await recordStarted(reply, pool, handle, {
        kind: 'dlq_bulk',
        source: 'operator_api',
        requestedBy,
        tenantId: request.principal.tenantId,
        // As the workflow records it (its first activity leaves this row as it is); unset fields are not stored.
        filter: { action, ...filter, ...(body.reason ? { reason: body.reason } : {}) },
      });
      return reply.status(202).send({
        status: 'accepted' as const,
        workflow_id: handle.workflowId,
        status_url: `/replays/${encodeURIComponent(handle.workflowId)}`,
        eligible: count.eligible,
      });
    },
  );
};

export default dlqTriageRoutes;

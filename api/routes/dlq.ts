import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { DLQ_STATUSES } from '../../journal/kinds';
import { getDlqEntry, listDlq } from '../../repository/event-dlq';
import type { Config } from '../../shared/config';
import type { Pool } from '../../shared/db';
import { dlqRetryWorkflow } from '../../workflows';
import { replaySearchAttributes } from '../../workflows/search-attributes';
import { httpError } from '../http-error';
import { keysetPage, recordStarted } from '../route-helpers';
import { StringEnum, errorResponses, NullableInteger, NullableString, Timestamp, Id } from '../schemas';
import { startForRequest } from '../start-workflow';
import { canSee } from '../tenant-scope';
import { DlqFilterFields, dlqFilterOf } from '../dlq-filter';

const Status = StringEnum(DLQ_STATUSES);
const DlqEntry = Type.Object({
  id: Type.Integer(),
  topic: Type.String(),
  tenant_id: NullableString,
  reason: Type.String(),
  error: Type.String(),
  error_class: NullableString,
  kafka_partition: NullableInteger,
  kafka_offset: NullableInteger,
  received_at: Timestamp,
  status: Status,
  attempts: Type.Integer(),
  last_error: NullableString,
  next_attempt_at: Timestamp,
  resolved_at: Type.Union([Timestamp, Type.Null()]),
  resolved_event_id: NullableInteger,
  discard_reason: NullableString,
});
const RetryResult = Type.Object({
  status: Type.String(),
  workflow_id: Type.String(),
  attempted: Type.Optional(Type.Integer()),
  resolved: Type.Optional(Type.Integer()),
  retrying: Type.Optional(Type.Integer()),
  parked: Type.Optional(Type.Integer()),
  skipped: Type.Optional(Type.Integer()),
  status_url: Type.Optional(Type.String()),
});
const more = {
  403: Type.Ref('ErrorBody'),
  404: Type.Ref('ErrorBody'),
  429: Type.Ref('ErrorBody'),
  503: Type.Ref('ErrorBody'),
};

/** Dead letters: list, retry one now. The retry schedule lives in dlq-schedule.ts. */
const dlqRoutes: FastifyPluginAsyncTypebox<{ pool: Pool; config: Pick<Config, 'temporal' | 'api'> }> = async (
  app,
  { pool, config },
) => {
  app.get(
    '/dlq',
    {
      schema: {
        tags: ['dlq'],
        summary:
          'Dead letters, newest first, with the error and its class; the next page cursor is in the x-next-cursor header',
        querystring: Type.Object(
          {
            ...DlqFilterFields,
            cursor: Type.Optional(Id),
            limit: Type.Integer({ minimum: 1, maximum: 1000, default: 50 }),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Array(DlqEntry), ...errorResponses, ...more },
      },
    },
    async (request, reply) => {
      const q = request.query;
      const rows = await listDlq(pool, {
        ...dlqFilterOf(request, q),
        before: q.cursor,
        limit: q.limit + 1,
      });
      const { items, next_cursor } = keysetPage(rows, q.limit);
      if (next_cursor !== null) reply.header('x-next-cursor', String(next_cursor));
      return items;
    },
  );

  app.post(
    '/dlq/:id/retry',
    {
      config: { replayLimited: true },
      schema: {
        tags: ['dlq'],
        summary: 'Retry one dead letter now (a dlqRetryWorkflow for that entry), even if parked',
        params: Type.Object({ id: Id }),
        response: { 200: RetryResult, 202: RetryResult, ...errorResponses, ...more },
      },
    },
    async (request, reply) => {
      const entry = await getDlqEntry(pool, request.params.id);
      if (!entry || !canSee(request, entry.tenant_id)) throw httpError(404, `DLQ entry ${request.params.id} not found`);
      if (entry.status === 'resolved') {
        throw httpError(409, `DLQ entry ${entry.id} is already resolved (journal event ${entry.resolved_event_id})`);
      }
      if (entry.status === 'discarded') {
        throw httpError(409, `DLQ entry ${entry.id} was discarded: ${entry.discard_reason ?? 'no reason recorded'}`);
      }
      const handle = await startForRequest(app, request, config, {
        prefix: `dlq-retry-${entry.id}`,
        workflow: dlqRetryWorkflow,
        input: { source: 'operator_api', entryIds: [entry.id], requestedBy: request.principal.subject },
        searchAttributes: replaySearchAttributes({
          kind: 'dlq_retry',
          source: 'operator_api',
          tenantId: entry.tenant_id ?? undefined,
          topic: entry.topic,
        }),
      });
      await recordStarted(reply, pool, handle, {
        kind: 'dlq_retry',
        source: 'operator_api',
        requestedBy: request.principal.subject,
        tenantId: request.principal.tenantId,
        filter: { entry_ids: [entry.id] },
      });
      const result = await reply.workflowResult(handle.result(), config.api.replayWaitMs);
      if (result === undefined) {
        const statusUrl = `/replays/${encodeURIComponent(handle.workflowId)}`;
        return reply.status(202).send({ status: 'accepted', workflow_id: handle.workflowId, status_url: statusUrl });
      }
      return result;
    },
  );
};

export default dlqRoutes;

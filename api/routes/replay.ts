import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { WorkflowFailedError } from '@temporalio/client';
import type { PermanentFailure } from '../../journal/kinds';
import { replayTargetRule, targetRefusal } from '../../journal/replay-targets';
import { getEvent } from '../../repository/event-journal';
import type { AuditStart } from '../../repository/replay-audit';
import type { Config } from '../../shared/config';
import type { Pool } from '../../shared/db';
import { batchReplayWorkflow, rangeReplayWorkflow, replayEventWorkflow } from '../../workflows';
import { MAX_BATCH_IDS, type RangeReplayInput } from '../../workflows/definitions';
import { replayOptions } from '../../workflows/replay-options';
import { replaySearchAttributes } from '../../workflows/search-attributes';
import { erasedEventError } from '../erased';
import { httpError } from '../http-error';
import { checkPayloadFilter, PayloadFilter } from '../payload-filter';
import { checkTransform, Ordering, orderingOf, Transform } from '../replay-transform';
import { recordStarted as recordStartedRequest } from '../route-helpers';
import { errorResponses, EventSummary, Id } from '../schemas';
import { startForRequest } from '../start-workflow';
import { canSee, scopedTenant } from '../tenant-scope';

const Accepted = Type.Object({
  status: Type.Literal('accepted'),
  workflow_id: Type.String(),
  status_url: Type.String(),
});
const Replayed = Type.Object({
  status: Type.Literal('replayed'),
  event_id: Type.Integer(),
  topic: Type.String(),
  tenant_id: Type.String(),
  workflow_id: Type.String(),
  replay_count: Type.Integer(),
});
const DryRun = Type.Object({
  status: Type.Literal('dry_run'),
  workflow_id: Type.String(),
  matched: Type.Integer(),
  by_topic: Type.Record(Type.String(), Type.Integer()),
  by_tenant: Type.Record(Type.String(), Type.Integer()),
  /** Of `matched`, the events read from the archive (cold replay), and the segments holding them. */
  archived: Type.Optional(Type.Integer()),
  archived_segments: Type.Optional(Type.Array(Type.String())),
  sample: Type.Optional(
    Type.Array(
      Type.Composite([
        EventSummary,
        Type.Object({
          payload: Type.Record(Type.String(), Type.Unknown()),
          transformed: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
          transform_error: Type.Optional(Type.String()),
        }),
      ]),
      {
        description:
          'The first matching events in id order (at most 10); with a transform, each payload as it would be sent (before lineage) or why the transform fails on it',
      },
    ),
  ),
  transform: Type.Optional(
    Type.Object({ id: Type.String(), patch: Type.Array(Type.Record(Type.String(), Type.Unknown())) }),
  ),
});
const Topic = Type.String({ minLength: 1, maxLength: 249, pattern: '^[A-Za-z0-9._-]+$' });
const responses = {
  ...errorResponses,
  401: Type.Ref('ErrorBody'),
  403: Type.Ref('ErrorBody'),
  404: Type.Ref('ErrorBody'),
  409: Type.Ref('ErrorBody'),
  410: Type.Ref('ErrorBody'),
  422: Type.Ref('ErrorBody'),
  429: Type.Ref('ErrorBody'),
  503: Type.Ref('ErrorBody'),
};

const statusUrl = (workflowId: string) => `/replays/${encodeURIComponent(workflowId)}`;

/** POST /replay/:id, /replay/batch and /replay/range: each starts a durable Temporal workflow. */
const replayRoutes: FastifyPluginAsyncTypebox<{
  pool: Pool;
  config: Pick<Config, 'temporal' | 'api' | 'replay' | 'kafka'>;
}> = async (app, { pool, config }) => {
  /**
   * Refuses targets outside REPLAY_TARGET_TOPICS (a tenant-scoped token: outside the ingested KAFKA_TOPICS, however
   * wide the allow-list), then targets the broker does not have. `topics` is keyed by the request field naming each.
   */
  const checkTargets = async (request: FastifyRequest, topics: Record<string, string | undefined>) => {
    const rule = replayTargetRule(config, request.principal.tenantId !== undefined);
    const refused = Object.entries(topics).flatMap(([field, topic]) =>
      topic === undefined ? [] : (targetRefusal(rule, topic, field) ?? []),
    );
    if (refused.length > 0) throw httpError(400, refused.join('; '));
    await app.kafkaTopics.refuseMissing(topics);
  };
  const recordStarted = (
    reply: FastifyReply,
    handle: { workflowId: string },
    audit: Omit<AuditStart, 'workflowId' | 'runId'>,
  ) => recordStartedRequest(reply, pool, handle, audit);

  app.post(
    '/replay/:id',
    {
      config: { replayLimited: true },
      // The body is optional (a transform): a POST without one is an empty one.
      preValidation: async (request) => void (request.body ??= {}),
      schema: {
        tags: ['replay'],
        summary: 'Replay one journal event to Kafka (waits for the workflow up to API_REPLAY_WAIT_MS)',
        params: Type.Object({ id: Id }),
        querystring: Type.Object({ target_topic: Type.Optional(Topic) }, { additionalProperties: false }),
        body: Type.Object({ transform: Type.Optional(Transform) }, { additionalProperties: false }),
        response: { 200: Replayed, 202: Accepted, ...responses },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const transform = checkTransform('body/transform', request.body.transform);
      const row = await getEvent(pool, id);
      if (!row) throw await erasedEventError(pool, id);
      if (!canSee(request, row.tenant_id)) throw httpError(404, `Event ${id} not found in event_journal`);
      const target = request.query.target_topic;
      await checkTargets(request, target ? { target_topic: target } : { [`topic of event ${id}`]: row.topic });
      const handle = await startForRequest(app, request, config, {
        prefix: `replay-event-${id}`,
        workflow: replayEventWorkflow,
        input: {
          eventId: id,
          source: 'operator_api',
          requestedBy: request.principal.subject,
          targetTopic: request.query.target_topic,
          tenantId: request.principal.tenantId,
          transform,
        },
        searchAttributes: replaySearchAttributes({
          kind: 'single',
          source: 'operator_api',
          tenantId: row.tenant_id,
          topic: request.query.target_topic ?? row.topic,
          eventId: id,
        }),
      });
      await recordStarted(reply, handle, {
        kind: 'single',
        source: 'operator_api',
        requestedBy: request.principal.subject,
        tenantId: request.principal.tenantId,
        eventId: id,
        filter: { ...(target ? { target_topic: target } : {}), ...replayOptions({ transform }) },
      });
      const result = await reply.workflowResult(handle.result(), config.api.replayWaitMs).catch(failureToHttp);
      if (result === undefined) {
        return reply
          .status(202)
          .send({ status: 'accepted', workflow_id: handle.workflowId, status_url: statusUrl(handle.workflowId) });
      }
      return result;
    },
  );

  app.post(
    '/replay/batch',
    {
      config: { replayLimited: true },
      schema: {
        tags: ['replay'],
        summary: `Replay up to ${MAX_BATCH_IDS} journal events by id`,
        body: Type.Object(
          {
            ids: Type.Array(Id, { minItems: 1, maxItems: MAX_BATCH_IDS }),
            target_topic: Type.Optional(Topic),
            transform: Type.Optional(Transform),
            ordering: Type.Optional(Ordering),
          },
          { additionalProperties: false },
        ),
        response: { 202: Accepted, ...responses },
      },
    },
    async (request, reply) => {
      const { ids, target_topic } = request.body;
      const ordering = orderingOf(request.body.ordering);
      const transform = checkTransform('body/transform', request.body.transform);
      await checkTargets(request, { target_topic });
      const handle = await startForRequest(app, request, config, {
        prefix: 'replay-batch',
        workflow: batchReplayWorkflow,
        input: {
          ids,
          source: 'batch',
          requestedBy: request.principal.subject,
          targetTopic: target_topic,
          tenantId: request.principal.tenantId,
          pageSize: config.replay.pageSize,
          transform,
          ordering,
        },
        searchAttributes: replaySearchAttributes({
          kind: 'batch',
          source: 'batch',
          tenantId: request.principal.tenantId,
          topic: target_topic,
        }),
      });
      await recordStarted(reply, handle, {
        kind: 'batch',
        source: 'batch',
        requestedBy: request.principal.subject,
        tenantId: request.principal.tenantId,
        filter: {
          ids: ids.length,
          ...(target_topic ? { target_topic } : {}),
          ...replayOptions({ transform, ordering }),
        },
      });
      return reply
        .status(202)
        .send({ status: 'accepted', workflow_id: handle.workflowId, status_url: statusUrl(handle.workflowId) });
    },
  );

  app.post(
    '/replay/range',
    {
      config: { replayLimited: true },
      schema: {
        tags: ['replay'],
        summary:
          'Replay every event received in [start, end), archived or in the journal, optionally by tenant, topic and a JSONPath payload filter (journal events only)',
        body: Type.Object(
          {
            start: Type.String({ format: 'date-time' }),
            end: Type.String({ format: 'date-time' }),
            tenant_id: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
            topic: Type.Optional(Topic),
            include_replays: Type.Optional(Type.Boolean()),
            payload_filter: Type.Optional(PayloadFilter),
            target_topic: Type.Optional(Topic),
            dry_run: Type.Optional(Type.Boolean()),
            max_events_per_second: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1_000_000 })),
            transform: Type.Optional(Transform),
            ordering: Type.Optional(Ordering),
          },
          { additionalProperties: false },
        ),
        response: { 200: DryRun, 202: Accepted, ...responses },
      },
    },
    async (request, reply) => {
      const body = request.body;
      if (Date.parse(body.start) >= Date.parse(body.end)) {
        throw httpError(400, `body/start must be before body/end (got ${body.start} .. ${body.end})`);
      }
      const tenantId = scopedTenant(request, body.tenant_id);
      await checkPayloadFilter(pool, 'body/payload_filter', body.payload_filter);
      const transform = checkTransform('body/transform', body.transform);
      // Without a target, events go back to their own topic: the filter's topic when there is one.
      if (!body.dry_run) {
        await checkTargets(request, body.target_topic ? { target_topic: body.target_topic } : { topic: body.topic });
      }
      const input: RangeReplayInput = {
        start: body.start,
        end: body.end,
        tenantId,
        topic: body.topic,
        includeReplays: body.include_replays ?? false,
        payloadFilter: body.payload_filter,
        targetTopic: body.target_topic,
        dryRun: body.dry_run ?? false,
        maxEventsPerSecond: body.max_events_per_second,
        pageSize: config.replay.pageSize,
        source: 'range',
        requestedBy: request.principal.subject,
        tenantScoped: request.principal.tenantId !== undefined,
        transform,
        ordering: orderingOf(body.ordering),
        // Large ranges are split into child workflows (workflows/range-shards.ts); a dry run only counts.
        ...(body.dry_run
          ? {}
          : { sharding: { threshold: config.replay.shardThreshold, shards: config.replay.shards } }),
      };
      const handle = await startForRequest(app, request, config, {
        prefix: body.dry_run ? 'replay-range-dryrun' : 'replay-range',
        workflow: rangeReplayWorkflow,
        input,
        searchAttributes: replaySearchAttributes({ kind: 'range', source: 'range', tenantId, topic: body.topic }),
      });
      await recordStarted(reply, handle, {
        kind: 'range',
        source: 'range',
        requestedBy: request.principal.subject,
        tenantId,
        filter: {
          start: body.start,
          end: body.end,
          tenantId,
          topic: body.topic,
          includeReplays: input.includeReplays,
          payloadFilter: body.payload_filter,
          target_topic: body.target_topic,
          dry_run: input.dryRun,
          ...replayOptions(input),
        },
      });
      if (body.dry_run) {
        // The counts (the CLI and the console wait for them), unless the API stops first or they take longer than
        // DRY_RUN_WAIT_MS: then the workflow's id, whose status shows them once counted.
        const counts = await reply.workflowResult(handle.result(), DRY_RUN_WAIT_MS).catch(failureToHttp);
        if (counts !== undefined) return counts;
      }
      return reply
        .status(202)
        .send({ status: 'accepted', workflow_id: handle.workflowId, status_url: statusUrl(handle.workflowId) });
    },
  );
};

/** How long a range dry run's request waits for its counts. */
const DRY_RUN_WAIT_MS = 10 * 60_000;

const FAILURE_STATUS: Partial<Record<PermanentFailure, number>> = {
  EventNotFound: 404,
  HopLimitExceeded: 409,
  InvalidRequest: 400,
  UnknownTopic: 400,
  EventErased: 410,
  TransformFailed: 422,
  UnprocessableData: 422,
};

/** A replay that failed for a permanent reason answers with that reason (404 not found, 410 erased, 409 hop limit, 400). */
function failureToHttp(err: unknown): never {
  if (err instanceof WorkflowFailedError) {
    let cause: unknown = err.cause;
    while (cause && !(cause as { type?: string }).type && (cause as { cause?: unknown }).cause)
      cause = (cause as { cause?: unknown }).cause;
    const { type, message } = (cause ?? {}) as { type?: string; message?: string };
    const status = type ? FAILURE_STATUS[type as PermanentFailure] : undefined;
    if (status) throw httpError(status, message ?? type!);
  }
  throw err;
}

export default replayRoutes;

import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Client, WorkflowExecutionDescription, WorkflowHandle } from '@temporalio/client';
import { WorkflowNotFoundError } from '@temporalio/common';
import { AUDIT_STATUSES, REPLAY_KINDS, type AuditStatus, type ReplayKind } from '../../journal/kinds';
import { getAudit, listAudits, type AuditRow } from '../../repository/replay-audit';
import type { Config } from '../../shared/config';
import type { Pool } from '../../shared/db';
import { withTimeout } from '../../shared/timeout';
import {
  CONTROL_HISTORY_BUDGET,
  dlqBulkProgressQuery,
  pauseSignal,
  progressQuery,
  resumeSignal,
  setRateSignal,
  type DlqBulkProgress,
  type ReplayProgress,
} from '../../workflows/definitions';
import {
  batchReplayWorkflow,
  dlqBulkWorkflow,
  dlqRetryWorkflow,
  rangeReplayWorkflow,
  replayEventWorkflow,
} from '../../workflows';
import { withChildProgress } from '../../workflows/shard-progress';
import { httpError } from '../http-error';
import { keysetPage } from '../route-helpers';
import { StringEnum, errorResponses, NullableInteger, NullableString, Timestamp, Id } from '../schemas';
import { canSee, scopedTenant } from '../tenant-scope';

const Kind = StringEnum(REPLAY_KINDS);
const AuditStatus = StringEnum(AUDIT_STATUSES);
const Audit = Type.Object({
  id: Type.Integer(),
  workflow_id: Type.String(),
  run_id: NullableString,
  kind: Kind,
  source: Type.String(),
  requested_by: NullableString,
  tenant_id: NullableString,
  event_id: NullableInteger,
  filter: Type.Record(Type.String(), Type.Unknown()),
  status: Type.String(),
  matched: Type.Integer(),
  published: Type.Integer(),
  failed: Type.Integer(),
  error: NullableString,
  created_at: Timestamp,
  finished_at: Type.Union([Timestamp, Type.Null()]),
});
const Progress = Type.Object({
  status: Type.String(),
  matched: Type.Integer(),
  published: Type.Integer(),
  failed: Type.Integer(),
  cursor: Type.Integer(),
  pages: Type.Integer(),
  eventsPerSecond: Type.Number(),
  maxEventsPerSecond: Type.Union([Type.Number(), Type.Null()]),
  shards: Type.Optional(
    Type.Array(
      Type.Object({
        workflow_id: Type.String(),
        status: Type.String(),
        matched: Type.Integer(),
        published: Type.Integer(),
        failed: Type.Integer(),
        pages: Type.Integer(),
        cursor: Type.Integer(),
        eventsPerSecond: Type.Number(),
        maxEventsPerSecond: Type.Union([Type.Number(), Type.Null()]),
        stale: Type.Optional(Type.Boolean()),
      }),
      { description: 'A sharded range replay: its child workflows, reached only through this replay' },
    ),
  ),
});
const BulkProgress = Type.Object({
  status: Type.String(),
  action: Type.String(),
  matched: Type.Integer(),
  done: Type.Integer(),
  cursor: Type.Integer(),
  pages: Type.Integer(),
  counts: Type.Record(Type.String(), Type.Integer()),
});
const Detail = Type.Object({
  workflow_id: Type.String(),
  workflow_status: Type.String(),
  temporal_ui_url: Type.String(),
  audit: Type.Union([Audit, Type.Null()]),
  progress: Type.Union([Progress, BulkProgress, Type.Null()]),
  result: Type.Optional(Type.Unknown()),
});
/**
 * Workflow id prefixes of the workflows this service starts (api/routes/replay.ts, api/routes/dlq.ts, the DLQ
 * retry schedule, whose runs are named dlq-retry-scheduled-<schedule id>-<time>, and api/routes/dlq-triage.ts).
 */
export const WORKFLOW_ID_PREFIXES = [
  'replay-event-',
  'replay-batch-',
  'replay-range-',
  'dlq-retry-',
  'dlq-bulk-',
] as const;
/** Workflow types this service runs; a workflow of any other type is another team's, whatever its id. */
const WORKFLOW_TYPES: string[] = [
  replayEventWorkflow.name,
  batchReplayWorkflow.name,
  rangeReplayWorkflow.name,
  dlqRetryWorkflow.name,
  dlqBulkWorkflow.name,
];

/** A workflow this service started and the caller may see. */
interface OwnWorkflow {
  audit: AuditRow;
  handle: WorkflowHandle;
  description: WorkflowExecutionDescription;
}

const WorkflowParams = Type.Object({ workflowId: Type.String({ minLength: 1, maxLength: 300 }) });
const notFound = { 404: Type.Ref('ErrorBody'), 503: Type.Ref('ErrorBody') };

/** Replay workflows: the audit trail, live status and progress, and operator controls. */
const replaysRoutes: FastifyPluginAsyncTypebox<{ pool: Pool; config: Pick<Config, 'temporal'> }> = async (
  app,
  { pool, config },
) => {
  const uiUrl = (id: string) =>
    `${config.temporal.uiUrl}/namespaces/${encodeURIComponent(config.temporal.namespace)}/workflows/${encodeURIComponent(id)}`;

  /**
   * The namespace is shared: a workflow id alone proves nothing. A route acts on a workflow only when it is this
   * service's (one of our id prefixes, a replay_audit row, one of our workflow types) and the caller's tenant may see
   * it; anything else is the same 404 for every role, so nothing is disclosed about other teams' workflows.
   */
  const ownWorkflow = async (request: Parameters<typeof canSee>[0], workflowId: string): Promise<OwnWorkflow> => {
    const notOurs = () => httpError(404, `Replay ${workflowId} not found`);
    if (!WORKFLOW_ID_PREFIXES.some((prefix) => workflowId.startsWith(prefix))) throw notOurs();
    const audit = await getAudit(pool, workflowId);
    if (!audit || !canSee(request, audit.tenant_id)) throw notOurs();
    return app.temporal.call(async (client) => {
      // Pinned to the chain of runs we started: cancel and the like cannot reach a later chain under the same id.
      const handle = client.workflow.getHandle(workflowId, undefined, {
        firstExecutionRunId: audit.run_id ?? undefined,
      });
      let description: WorkflowExecutionDescription;
      try {
        description = await handle.describe();
      } catch (err) {
        if (err instanceof WorkflowNotFoundError) throw notOurs();
        throw err;
      }
      if (!WORKFLOW_TYPES.includes(description.type)) throw notOurs();
      // A workflow id names a chain of runs: once ours closed, anyone may start another under the same id.
      const firstRunId = description.raw.workflowExecutionInfo?.firstRunId;
      if (audit.run_id && firstRunId && firstRunId !== audit.run_id) throw notOurs();
      return { audit, handle, description };
    });
  };

  app.get(
    '/replays',
    {
      schema: {
        tags: ['replays'],
        summary: 'Recent replay and DLQ-retry workflows from the audit trail, newest first',
        querystring: Type.Object(
          {
            kind: Type.Optional(Kind),
            status: Type.Optional(AuditStatus),
            tenant_id: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
            cursor: Type.Optional(Id),
            limit: Type.Integer({ minimum: 1, maximum: 1000, default: 50 }),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ items: Type.Array(Audit), next_cursor: NullableInteger }), ...errorResponses },
      },
    },
    async (request) => {
      const q = request.query;
      const rows = await listAudits(pool, {
        kind: q.kind as ReplayKind | undefined,
        status: q.status as AuditStatus | undefined,
        tenantId: scopedTenant(request, q.tenant_id),
        before: q.cursor,
        limit: q.limit + 1,
      });
      return keysetPage(rows, q.limit);
    },
  );

  app.get(
    '/replays/:workflowId',
    {
      schema: {
        tags: ['replays'],
        summary: 'Status, live progress and result of one replay workflow',
        params: WorkflowParams,
        response: { 200: Detail, ...errorResponses, ...notFound },
      },
    },
    async (request) => {
      const { workflowId } = request.params;
      const { audit, handle, description } = await ownWorkflow(request, workflowId);
      return app.temporal.call(async (client) => {
        const running = description.status.name === 'RUNNING';
        const progress: ReplayProgress | DlqBulkProgress | null = !running
          ? null
          : description.type === rangeReplayWorkflow.name
            ? await handle
                .query(progressQuery)
                .then((p) => freshShards(client, p))
                .catch(() => null)
            : description.type === dlqBulkWorkflow.name
              ? await handle.query(dlqBulkProgressQuery).catch(() => null)
              : null;
        const result =
          description.status.name === 'COMPLETED' ? await handle.result().catch(() => undefined) : undefined;
        return {
          workflow_id: workflowId,
          workflow_status: description.status.name,
          temporal_ui_url: uiUrl(workflowId),
          audit,
          progress,
          ...(result !== undefined ? { result } : {}),
        };
      });
    },
  );

  const control = (action: 'pause' | 'resume' | 'cancel') =>
    app.post(
      `/replays/:workflowId/${action}`,
      {
        schema: {
          tags: ['replays'],
          summary: `${action[0].toUpperCase()}${action.slice(1)} a running replay workflow`,
          params: WorkflowParams,
          response: {
            202: Type.Object({ workflow_id: Type.String(), action: Type.String() }),
            ...errorResponses,
            ...notFound,
            409: Type.Ref('ErrorBody'),
          },
        },
      },
      async (request, reply) => {
        const { workflowId } = request.params;
        const { handle, description } = await ownWorkflow(request, workflowId);
        requireRunning(description, action === 'cancel' ? undefined : action);
        await app.temporal.call(async () => {
          try {
            if (action === 'cancel') return await handle.cancel();
            await handle.signal(action === 'pause' ? pauseSignal : resumeSignal);
          } catch (err) {
            // Closed between the describe and the call.
            if (err instanceof WorkflowNotFoundError) throw httpError(409, `Replay ${workflowId} is no longer running`);
            throw err;
          }
        });
        return reply.status(202).send({ workflow_id: workflowId, action });
      },
    );
  control('pause');
  control('resume');
  control('cancel');

  app.post(
    '/replays/:workflowId/rate',
    {
      schema: {
        tags: ['replays'],
        summary: 'Set a new events-per-second limit on a running range replay (null removes it)',
        params: WorkflowParams,
        body: Type.Object(
          {
            max_events_per_second: Type.Union([Type.Number({ exclusiveMinimum: 0, maximum: 1_000_000 }), Type.Null()]),
          },
          { additionalProperties: false },
        ),
        response: {
          202: Type.Object({ workflow_id: Type.String(), action: Type.String() }),
          ...errorResponses,
          ...notFound,
          409: Type.Ref('ErrorBody'),
        },
      },
    },
    async (request, reply) => {
      const { workflowId } = request.params;
      const { handle, description } = await ownWorkflow(request, workflowId);
      requireRunning(description, 'rate');
      await app.temporal.call(async () => {
        try {
          await handle.signal(setRateSignal, request.body.max_events_per_second);
        } catch (err) {
          if (err instanceof WorkflowNotFoundError) throw httpError(409, `Replay ${workflowId} is no longer running`);
          throw err;
        }
      });
      return reply.status(202).send({ workflow_id: workflowId, action: 'rate' });
    },
  );
};

/** How long GET /replays/:id waits for one child's answer, and before asking a child that did not answer again. */
const CHILD_QUERY_TIMEOUT_MS = 2_000;
const CHILD_QUERY_RETRY_MS = 250;

/**
 * A sharded range replay's progress with each unfinished child's own answer: the coordinator holds their reports,
 * which grow rarer the longer they run (workflows/range-shards.ts reportDue), the children their live counts. All
 * children at once (REPLAY_SHARDS is capped), each asked at most twice within CHILD_QUERY_TIMEOUT_MS (a child between
 * two runs answers a moment later); one that does not answer shows its last report, marked stale.
 */
async function freshShards(client: Client, progress: ReplayProgress): Promise<ReplayProgress> {
  if (!progress.shards) return progress;
  const ask = (workflowId: string) =>
    withTimeout(
      client.workflow.getHandle(workflowId).query(progressQuery),
      CHILD_QUERY_TIMEOUT_MS,
      `${workflowId} did not answer`,
    ).catch(() => null);
  const answers = await Promise.all(
    progress.shards
      .filter((shard) => shard.status !== 'completed')
      .map(async (shard) => {
        const own =
          (await ask(shard.workflow_id)) ??
          (await new Promise((resolve) => setTimeout(resolve, CHILD_QUERY_RETRY_MS)).then(() =>
            ask(shard.workflow_id),
          ));
        return [shard.workflow_id, own] as const;
      }),
  );
  return withChildProgress(progress, new Map(answers));
}

/** 409 unless the workflow is running and, for a range-only control (pause, resume, rate), is a range replay. */
function requireRunning(description: WorkflowExecutionDescription, rangeOnly?: string): void {
  const { workflowId, status, type, historyLength } = description;
  if (status.name !== 'RUNNING') throw httpError(409, `Replay ${workflowId} is ${status.name}, not running`);
  if (rangeOnly && type !== rangeReplayWorkflow.name) {
    throw httpError(409, `Only range replays can ${rangeOnly}; ${workflowId} is a ${type}`);
  }
  if (rangeOnly && historyLength >= CONTROL_HISTORY_BUDGET) {
    throw httpError(
      409,
      `Replay ${workflowId} cannot ${rangeOnly} any more: its history holds ${historyLength} events, and past ` +
        `${CONTROL_HISTORY_BUDGET} controls are refused so that it stays under Temporal's limit and can finish; ` +
        'cancel it and replay the rest of the range (its progress cursor says from where)',
    );
  }
}

export default replaysRoutes;

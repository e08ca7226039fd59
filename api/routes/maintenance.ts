import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ScheduleNotFoundError } from '@temporalio/client';
import { countDefaultPartitionRows, journalPartitionStats } from '../../repository/journal-partitions';
import { listLifecycleAudit } from '../../repository/lifecycle-audit';
import type { Config } from '../../shared/config';
import type { Pool } from '../../shared/db';
import { journalMaintenanceWorkflow } from '../../workflows';
import { errorResponses } from '../schemas';
import { startForRequest } from '../start-workflow';

const Partition = Type.Object({
  name: Type.String(),
  from: Type.Union([Type.String(), Type.Null()]),
  to: Type.Union([Type.String(), Type.Null()]),
  default: Type.Boolean(),
  estimated_rows: Type.Number(),
  bytes: Type.Number(),
});
const Run = Type.Object({
  workflow_id: Type.String(),
  requested_by: Type.Union([Type.String(), Type.Null()]),
  status: Type.String(),
  request: Type.Unknown(),
  actions: Type.Array(Type.Unknown()),
  error: Type.Union([Type.String(), Type.Null()]),
  started_at: Type.String(),
  finished_at: Type.Union([Type.String(), Type.Null()]),
});
const Maintenance = Type.Object({
  interval: Type.String(),
  partitions_ahead: Type.Integer(),
  default_partition_rows: Type.Integer(),
  schedule: Type.Union([
    Type.Object({
      schedule_id: Type.String(),
      paused: Type.Boolean(),
      next_runs: Type.Array(Type.String()),
    }),
    Type.Null(),
  ]),
  partitions: Type.Array(Partition),
  runs: Type.Array(Run),
});

/**
 * The journal's time partitions and the maintenance workflow (docs/lifecycle.md): what exists, what the last runs
 * did, and a run on demand (admin: it archives and drops data of every tenant).
 */
const maintenanceRoutes: FastifyPluginAsyncTypebox<{
  pool: Pool;
  config: Pick<Config, 'journal' | 'temporal'>;
}> = async (app, { pool, config }) => {
  app.get(
    '/maintenance',
    {
      schema: {
        tags: ['lifecycle'],
        summary: "The journal's partitions, the maintenance schedule and its last runs with what each did",
        querystring: Type.Object({ limit: Type.Integer({ minimum: 1, maximum: 100, default: 20 }) }),
        response: { 200: Maintenance, ...errorResponses },
      },
    },
    async (request) => {
      const [partitions, runs, strays] = await Promise.all([
        journalPartitionStats(pool),
        listLifecycleAudit(pool, 'maintenance', request.query.limit),
        countDefaultPartitionRows(pool),
      ]);
      const schedule = await app.temporal
        .call(async (client) => {
          const d = await client.schedule.getHandle(config.journal.maintenanceScheduleId).describe();
          return {
            schedule_id: config.journal.maintenanceScheduleId,
            paused: d.state.paused,
            next_runs: d.info.nextActionTimes.map((t) => t.toISOString()),
          };
        })
        .catch((err: unknown) => {
          if (err instanceof ScheduleNotFoundError) return null;
          throw err;
        });
      return {
        interval: config.journal.partitionInterval,
        partitions_ahead: config.journal.partitionsAhead,
        default_partition_rows: strays,
        schedule,
        partitions: partitions.map((p) => ({
          name: p.name,
          from: p.from?.toISOString() ?? null,
          to: p.to?.toISOString() ?? null,
          default: p.isDefault,
          estimated_rows: p.estimatedRows,
          bytes: p.bytes,
        })),
        runs: runs.map((r) => ({
          workflow_id: r.workflow_id,
          requested_by: r.requested_by,
          status: r.status,
          request: r.request,
          actions: r.actions,
          error: r.error,
          started_at: r.started_at.toISOString(),
          finished_at: r.finished_at?.toISOString() ?? null,
        })),
      };
    },
  );

  app.post(
    '/maintenance/run',
    {
      schema: {
        tags: ['lifecycle'],
        summary: 'Run journal maintenance now (dry_run: plan only, remove nothing). Admin only.',
        body: Type.Optional(Type.Object({ dry_run: Type.Optional(Type.Boolean()) }, { additionalProperties: false })),
        response: {
          202: Type.Object({ workflow_id: Type.String(), status_url: Type.String(), dry_run: Type.Boolean() }),
          ...errorResponses,
        },
      },
    },
    async (request, reply) => {
      const dryRun = request.body?.dry_run ?? false;
      const handle = await startForRequest(app, request, config, {
        prefix: 'journal-maintenance',
        workflow: journalMaintenanceWorkflow,
        input: { trigger: 'operator', requestedBy: request.principal.subject, dryRun },
        searchAttributes: [],
      });
      return reply.status(202).send({ workflow_id: handle.workflowId, status_url: '/maintenance', dry_run: dryRun });
    },
  );
};

export default maintenanceRoutes;

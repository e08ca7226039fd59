import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ScheduleNotFoundError } from '@temporalio/client';
import { parseDuration } from '../../shared/config';
import type { Config } from '../../shared/config';
import { httpError } from '../http-error';
import { errorResponses } from '../schemas';

const Schedule = Type.Object({
  schedule_id: Type.String(),
  interval_seconds: Type.Number(),
  paused: Type.Boolean(),
  note: Type.Union([Type.String(), Type.Null()]),
  next_runs: Type.Array(Type.String()),
  recent_runs: Type.Array(Type.Object({ scheduled_at: Type.String(), workflow_id: Type.String() })),
  actions_taken: Type.Integer(),
});
const MAX_INTERVAL_MS = 365 * 86_400_000;
const more = { 404: Type.Ref('ErrorBody'), 503: Type.Ref('ErrorBody') };

/** The Temporal Schedule that runs dlqRetryWorkflow: show, change interval, pause/unpause, trigger now. */
const dlqScheduleRoutes: FastifyPluginAsyncTypebox<{ config: Pick<Config, 'dlqRetry'> }> = async (app, { config }) => {
  const scheduleId = config.dlqRetry.scheduleId;
  const describe = () =>
    app.temporal.call(async (client) => {
      try {
        const d = await client.schedule.getHandle(scheduleId).describe();
        const every = d.spec.intervals?.[0]?.every ?? 0;
        return {
          schedule_id: scheduleId,
          interval_seconds: Number(every) / 1000,
          paused: d.state.paused,
          note: d.state.note ?? null,
          next_runs: d.info.nextActionTimes.map((t) => t.toISOString()),
          recent_runs: d.info.recentActions.map((a) => ({
            scheduled_at: a.scheduledAt.toISOString(),
            workflow_id: a.action.workflow.workflowId,
          })),
          actions_taken: d.info.numActionsTaken,
        };
      } catch (err) {
        if (err instanceof ScheduleNotFoundError) {
          throw httpError(404, `Schedule ${scheduleId} does not exist yet: it is created when the worker starts`);
        }
        throw err;
      }
    });

  app.get(
    '/dlq/retry-schedule',
    {
      schema: {
        tags: ['dlq'],
        summary: 'The automated DLQ retry schedule',
        response: { 200: Schedule, ...errorResponses, ...more },
      },
    },
    describe,
  );

  app.patch(
    '/dlq/retry-schedule',
    {
      schema: {
        tags: ['dlq'],
        summary: 'Change the retry interval (e.g. "10m") and/or pause or unpause the schedule',
        body: Type.Object(
          {
            interval: Type.Optional(Type.String({ pattern: '^\\d+(ms|s|m|h|d)$' })),
            paused: Type.Optional(Type.Boolean()),
          },
          { additionalProperties: false, minProperties: 1 },
        ),
        response: { 200: Schedule, ...errorResponses, ...more },
      },
    },
    async (request) => {
      const { interval, paused } = request.body;
      const every = interval === undefined ? undefined : parseDuration(interval);
      // Temporal holds at most 10,000 years; a retry schedule has no use beyond one.
      if (every !== undefined && (!Number.isFinite(every) || every < 1000 || every > MAX_INTERVAL_MS)) {
        throw httpError(400, `body/interval must be at least 1s and at most 365d (got ${interval})`);
      }
      await describe(); // 404 when missing
      await app.temporal.call(async (client) => {
        const handle = client.schedule.getHandle(scheduleId);
        if (every !== undefined) {
          await handle.update((previous) => ({ ...previous, spec: { intervals: [{ every }] } }));
        }
        const note = `by ${request.principal.subject} via API`;
        if (paused === true) await handle.pause(`paused ${note}`);
        if (paused === false) await handle.unpause(`unpaused ${note}`);
      });
      return describe();
    },
  );

  app.post(
    '/dlq/retry-schedule/trigger',
    {
      schema: {
        tags: ['dlq'],
        summary: 'Run the DLQ retry now, outside the schedule',
        response: {
          202: Type.Object({ schedule_id: Type.String(), triggered: Type.Boolean() }),
          ...errorResponses,
          ...more,
        },
      },
    },
    async (_request, reply) => {
      await describe();
      await app.temporal.call((client) => client.schedule.getHandle(scheduleId).trigger());
      return reply.status(202).send({ schedule_id: scheduleId, triggered: true });
    },
  );
};

export default dlqScheduleRoutes;

import { ScheduleNotFoundError, ScheduleOverlapPolicy, type ScheduleDescription } from '@temporalio/client';
import type { Config } from '../../shared/config';
import { ensureDlqRetrySchedule } from '../../worker/dlq-schedule';
import { createApiEnv, json, type ApiEnv } from '../support/api';
import { uniqueSuffix } from '../support/env';
import { eventually } from '../support/sink';

/**
 * The DLQ retry Schedule against the dev server (the time-skipping server has no Schedule API). The file uses a
 * schedule id of its own (DLQ_RETRY_SCHEDULE_ID) whose action targets its own task queue, where its own worker runs
 * the triggered workflow against its own database; the schedule is deleted at the end.
 */
let env: ApiEnv;
let config: Config;
const SCHEDULE_ID = `crm-events-dlq-retry-test-${uniqueSuffix()}`;

const schedule = () => env.client.schedule.getHandle(SCHEDULE_ID);
const everyMs = (d: ScheduleDescription) => Number(d.spec.intervals?.[0]?.every);
const get = () => env.app.inject({ method: 'GET', url: '/dlq/retry-schedule' });
const MUTATE = { 'x-requested-by': 'test' }; // the custom header a cross-site form cannot send
const patch = (payload: object) =>
  env.app.inject({ method: 'PATCH', url: '/dlq/retry-schedule', payload, headers: MUTATE });

beforeAll(async () => {
  env = await createApiEnv('api-schedule', {
    ingest: false,
    env: { DLQ_RETRY_SCHEDULE_ID: SCHEDULE_ID, DLQ_RETRY_INTERVAL: '5m' },
  });
  config = env.h.config;
  expect(config.dlqRetry.scheduleId).toBe(SCHEDULE_ID);
});

afterAll(async () => {
  if (!env) return;
  await schedule()
    .delete()
    .catch((err: unknown) => {
      if (!(err instanceof ScheduleNotFoundError)) throw err;
    });
  await env.close();
});

it('GET /dlq/retry-schedule answers 404 naming the schedule before any worker has created it', async () => {
  const res = await get();
  expect(res.statusCode).toBe(404);
  expect(json(res).message).toContain(SCHEDULE_ID);
  expect(
    (await env.app.inject({ method: 'POST', url: '/dlq/retry-schedule/trigger', headers: MUTATE })).statusCode,
  ).toBe(404);
  expect((await patch({ paused: true })).statusCode).toBe(404);
});

it('ensureDlqRetrySchedule is idempotent: create or update, one schedule, every 5 m, overlap skip', async () => {
  // Two workers starting at once both find no schedule and both create it: the loser updates the winner's (it
  // crashed with ScheduleAlreadyRunning, found by the cluster profile's two workers).
  await Promise.all([1, 2].map(() => ensureDlqRetrySchedule(env.client, config, env.h.log)));
  const first = await schedule().describe();
  await ensureDlqRetrySchedule(env.client, config, env.h.log);
  const second = await schedule().describe();

  for (const d of [first, second]) {
    expect(everyMs(d)).toBe(300_000);
    expect(d.policies.overlap).toBe(ScheduleOverlapPolicy.SKIP);
    expect(d.state.paused).toBe(false);
    expect(d.action).toMatchObject({
      type: 'startWorkflow',
      workflowType: 'dlqRetryWorkflow',
      taskQueue: env.taskQueue,
    });
  }
  expect(second.info.createdAt).toEqual(first.info.createdAt); // updated in place, not recreated
  const ids: string[] = [];
  for await (const s of env.client.schedule.list()) if (s.scheduleId === SCHEDULE_ID) ids.push(s.scheduleId);
  expect(ids.length).toBeLessThanOrEqual(1); // schedule listing is eventually consistent; never two
});

it('GET /dlq/retry-schedule shows the schedule: 300 s, not paused, next runs', async () => {
  const res = await get();
  expect(res.statusCode).toBe(200);
  const body = json<{ schedule_id: string; interval_seconds: number; paused: boolean; next_runs: string[] }>(res);
  expect(body).toMatchObject({ schedule_id: SCHEDULE_ID, interval_seconds: 300, paused: false });
  expect(body.next_runs.length).toBeGreaterThan(0);
  const next = Date.parse(body.next_runs[0]);
  expect(next).toBeGreaterThan(Date.now() - 1000);
  expect(next).toBeLessThanOrEqual(Date.now() + 300_000 + 1000);
});

it('PATCH changes the interval and keeps the overlap policy and action', async () => {
  const res = await patch({ interval: '10m' });
  expect(res.statusCode).toBe(200);
  expect(json(res)).toMatchObject({ interval_seconds: 600, paused: false });
  const d = await schedule().describe();
  expect(everyMs(d)).toBe(600_000);
  expect(d.policies.overlap).toBe(ScheduleOverlapPolicy.SKIP);
  expect(d.action).toMatchObject({ workflowType: 'dlqRetryWorkflow', taskQueue: env.taskQueue });
});

it('PATCH pauses it with a note saying who did', async () => {
  const res = await patch({ paused: true });
  expect(res.statusCode).toBe(200);
  expect(json(res)).toMatchObject({
    paused: true,
    interval_seconds: 600,
    note: expect.stringMatching(/paused by anonymous via API/),
  });
  expect((await schedule().describe()).state.paused).toBe(true);
  expect(json(await get())).toMatchObject({ paused: true });
});

it('POST trigger runs dlqRetryWorkflow now, which retries the due dead letters of this database', async () => {
  const { rows } = await env.h.pool.query<{ id: string }>(
    `INSERT INTO event_dlq (topic, tenant_id, payload, error, reason, next_attempt_at)
     VALUES ($1, 'sched', '{"tenant_id":"sched","name":"due"}', 'Postgres unavailable', 'db_error', now() - interval '1 minute')
     RETURNING id`,
    [env.h.topics.leads],
  );
  const entryId = Number(rows[0].id);
  const since = new Date(Date.now() - 1000).toISOString();
  const res = await env.app.inject({ method: 'POST', url: '/dlq/retry-schedule/trigger', headers: MUTATE });
  expect(res.statusCode).toBe(202);
  expect(json(res)).toEqual({ schedule_id: SCHEDULE_ID, triggered: true });

  // The run carries the search attributes an operator filters by.
  const query = `CrmReplayKind='dlq_retry' AND TaskQueue='${env.taskQueue}' AND StartTime >= '${since}'`;
  const runs = await eventually(async () => {
    const found = [];
    for await (const wf of env.client.workflow.list({ query })) found.push(wf);
    return found.length ? found : undefined;
  }, 'a dlqRetryWorkflow run in the visibility store');
  expect(runs).toHaveLength(1);
  expect(runs[0].type).toBe('dlqRetryWorkflow');
  expect(runs[0].workflowId).toMatch(/^dlq-retry-scheduled/);

  const result = await env.client.workflow.getHandle(runs[0].workflowId).result();
  expect(result).toMatchObject({ status: 'completed', resolved: 1, parked: 0 });
  const entry = (await env.h.pool.query('SELECT status, resolved_event_id FROM event_dlq WHERE id = $1', [entryId]))
    .rows[0];
  expect(entry.status).toBe('resolved');
  const journaled = (
    await env.h.pool.query('SELECT tenant_id, payload FROM event_journal WHERE id = $1', [entry.resolved_event_id])
  ).rows[0];
  expect(journaled).toEqual({ tenant_id: 'sched', payload: { tenant_id: 'sched', name: 'due' } });
  const audit = (
    await env.h.pool.query('SELECT kind, source, status, published FROM replay_audit WHERE workflow_id = $1', [
      runs[0].workflowId,
    ])
  ).rows[0];
  expect(audit).toEqual({ kind: 'dlq_retry', source: 'automated', status: 'completed', published: 1 });

  const shown = json<{ recent_runs: { workflow_id: string }[]; paused: boolean }>(await get());
  expect(shown.paused).toBe(true); // a manual trigger does not unpause it
  expect(shown.recent_runs.map((r) => r.workflow_id)).toContain(runs[0].workflowId);
});

it('ensureDlqRetrySchedule again keeps the pause but resets the interval to the configuration', async () => {
  await ensureDlqRetrySchedule(env.client, config, env.h.log);
  const d = await schedule().describe();
  expect(d.state.paused).toBe(true);
  expect(everyMs(d)).toBe(300_000);
  expect(d.policies.overlap).toBe(ScheduleOverlapPolicy.SKIP);
  expect(json(await get())).toMatchObject({ paused: true, interval_seconds: 300 });

  const unpaused = await patch({ paused: false });
  expect(json(unpaused)).toMatchObject({ paused: false, note: expect.stringMatching(/unpaused by anonymous via API/) });
});

import { ensureMaintenanceSchedule } from '../../worker/maintenance-schedule';
import { createApiEnv, json, type ApiEnv } from '../support/api';
import { uniqueSuffix } from '../support/env';
import { deleteSchedule } from '../support/temporal';
import { eventually } from '../support/sink';

/**
 * Retention, maintenance and archive routes (docs/lifecycle.md) against the dev server and a real worker: the
 * maintenance Schedule (the time-skipping server has no Schedules) runs the workflow on this file's task queue and
 * database; the schedule is deleted at the end.
 */
let env: ApiEnv;
const SCHEDULE_ID = `crm-events-maintenance-test-${uniqueSuffix()}`;
const MUTATE = { 'x-requested-by': 'test' };

beforeAll(async () => {
  env = await createApiEnv('api-lifecycle', {
    ingest: false,
    env: { MAINTENANCE_SCHEDULE_ID: SCHEDULE_ID, MAINTENANCE_INTERVAL: '1h', JOURNAL_RETENTION: 'old.topic:30' },
  });
}, 60_000);

afterAll(async () => {
  if (!env) return;
  await deleteSchedule(env.h.config.temporal.address, SCHEDULE_ID);
  await env.close();
});

const get = (url: string) => env.app.inject({ method: 'GET', url });

it('GET /retention lists every ingested topic and "*", with the configured values and their source', async () => {
  const res = await get('/retention');
  expect(res.statusCode).toBe(200);
  const { policies } = json<{ policies: Array<{ topic: string; keep_days: number | null; source: string }> }>(res);
  const byTopic = Object.fromEntries(policies.map((p) => [p.topic, p]));
  for (const topic of env.h.config.kafka.topics)
    expect(byTopic[topic]).toMatchObject({ keep_days: null, source: 'default' });
  expect(byTopic['old.topic']).toMatchObject({ keep_days: 30, source: 'config' });
  expect(byTopic['*']).toMatchObject({ keep_days: null });
});

it('PUT /retention sets some topics (null = forever) and answers the policies now in force; bad values are 400', async () => {
  const topic = env.h.topics.leads;
  const res = await env.app.inject({
    method: 'PUT',
    url: '/retention',
    headers: MUTATE,
    payload: { policies: { [topic]: 400, 'old.topic': null } },
  });
  expect(res.statusCode).toBe(200);
  const byTopic = Object.fromEntries(
    json<{ policies: Array<{ topic: string; keep_days: number | null; source: string }> }>(res).policies.map((p) => [
      p.topic,
      p,
    ]),
  );
  expect(byTopic[topic]).toMatchObject({ keep_days: 400, source: 'api' });
  expect(byTopic['old.topic']).toMatchObject({ keep_days: null, source: 'api' });
  for (const payload of [
    { policies: { [topic]: 0 } },
    { policies: { [topic]: 2.5 } },
    { policies: { 'no spaces allowed': 3 } },
    { policies: {} },
    { policy: { [topic]: 3 } },
  ]) {
    const bad = await env.app.inject({ method: 'PUT', url: '/retention', headers: MUTATE, payload });
    expect({ payload, status: bad.statusCode }).toEqual({ payload, status: 400 });
    expect(json(bad).message).toMatch(/body/);
  }
});

it('POST /maintenance/run starts a run whose result GET /maintenance shows, with the partitions', async () => {
  const res = await env.app.inject({
    method: 'POST',
    url: '/maintenance/run',
    headers: MUTATE,
    payload: { dry_run: true },
  });
  expect(res.statusCode).toBe(202);
  const { workflow_id } = json<{ workflow_id: string }>(res);
  expect(workflow_id).toMatch(/^journal-maintenance-/);
  const run = await eventually(async () => {
    const body = json<{ runs: Array<{ workflow_id: string; status: string; requested_by: string }> }>(
      await get('/maintenance'),
    );
    return body.runs.find((r) => r.workflow_id === workflow_id && r.status === 'completed');
  }, 'the maintenance run to complete');
  expect(run.requested_by).toBeTruthy();
  const body = json<{ partitions: Array<{ name: string; default: boolean }>; default_partition_rows: number }>(
    await get('/maintenance'),
  );
  expect(body.partitions.some((p) => p.default)).toBe(true);
  expect(body.partitions.filter((p) => !p.default).length).toBeGreaterThanOrEqual(4);
  expect(body.default_partition_rows).toBe(0);
});

it('the maintenance Schedule exists once the worker side ensured it, and a triggered run completes', async () => {
  await ensureMaintenanceSchedule(env.client, env.h.config, env.h.log);
  await ensureMaintenanceSchedule(env.client, env.h.config, env.h.log); // idempotent
  const described = await env.client.schedule.getHandle(SCHEDULE_ID).describe();
  expect(Number(described.spec.intervals?.[0]?.every)).toBe(3_600_000);
  const before = json<{ runs: unknown[] }>(await get('/maintenance')).runs.length;
  await env.client.schedule.getHandle(SCHEDULE_ID).trigger();
  await eventually(async () => {
    const { runs, schedule } = json<{ runs: Array<{ status: string; workflow_id: string }>; schedule: unknown }>(
      await get('/maintenance'),
    );
    return schedule !== null && runs.length > before && runs[0].status === 'completed';
  }, 'the scheduled run to complete');
});

it('GET /archive lists the segments of the store (none yet here)', async () => {
  const res = await get('/archive');
  expect(res.statusCode).toBe(200);
  expect(json(res)).toEqual({ store: 'local', segments: [] });
});

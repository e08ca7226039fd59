import type { ChildProcess } from 'node:child_process';
import { Client, Connection } from '@temporalio/client';
import { freePort } from '../../bench/support/ports';
import { pruneApiLimits } from '../../repository/api-limits';
import { exited, spawnCli } from '../support/ingest-process';
import { seedJournal } from '../support/journal';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';
import { uniqueSuffix } from '../support/env';

/**
 * Issue 11, point 6: the replay rate limit and Idempotency-Key records are shared by every API instance on one
 * database. Two real `crm-events-sink api` processes on different ports, one scratch database.
 */
jest.setTimeout(120_000);

let h: SinkHarness;
let taskQueue: string;
let eventId: number;
const apis: { child: ChildProcess; url: string }[] = [];
const BUDGET = 4;

beforeAll(async () => {
  taskQueue = `api-limits-${uniqueSuffix()}`;
  h = await createSinkHarness('api-limits');
  [eventId] = await seedJournal(h.pool, 1, { topics: [h.topics.leads] });
  for (let i = 0; i < 2; i++) {
    const port = await freePort();
    const child = spawnCli('api', {
      DATABASE_URL: h.databaseUrl,
      KAFKA_TOPICS: `${h.topics.leads},${h.topics.jobs}`,
      TEMPORAL_TASK_QUEUE: taskQueue, // no worker polls it: started workflows just wait, terminated in afterAll
      API_HOST: '127.0.0.1',
      API_PORT: String(port),
      API_REPLAY_WAIT_MS: '0',
      API_REPLAY_RATE_LIMIT_PER_MINUTE: String(BUDGET),
      AUTH_JWT_SECRET: '',
      AUTH_MODE: '',
    });
    const url = `http://127.0.0.1:${port}`;
    apis.push({ child, url });
    await eventually(async () => (await fetch(`${url}/health`)).status === 200, `API on :${port} to answer`);
  }
});

afterAll(async () => {
  for (const { child } of apis) {
    child.kill('SIGTERM');
    await exited(child);
  }
  const connection = await Connection.connect({ address: h.config.temporal.address });
  const client = new Client({ connection, namespace: h.config.temporal.namespace });
  for await (const wf of client.workflow.list({ query: `TaskQueue='${taskQueue}' AND ExecutionStatus='Running'` })) {
    await client.workflow
      .getHandle(wf.workflowId)
      .terminate('test finished')
      .catch(() => undefined);
  }
  await connection.close();
  await h.close();
});

const replay = (url: string, headers: Record<string, string> = {}) =>
  fetch(`${url}/replay/${eventId}`, { method: 'POST', headers: { 'x-requested-by': 'test', ...headers } });

it('two API processes draw on one replay budget: the request past it is refused on either, with Retry-After', async () => {
  const [a, b] = apis;
  const statuses: number[] = [];
  // Alternating instances: an in-memory limit would admit 2 × BUDGET.
  for (let i = 0; i < BUDGET; i++) statuses.push((await replay(i % 2 === 0 ? a.url : b.url)).status);
  expect(statuses).toEqual(Array(BUDGET).fill(202));

  for (const api of [a, b]) {
    const refused = await replay(api.url);
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(Number(refused.headers.get('retry-after'))).toBeLessThanOrEqual(60);
  }
  const { rows } = await h.pool.query<{ n: number }>(
    'SELECT cardinality(hits) AS n FROM api_rate_limit WHERE caller = $1',
    ['ip:127.0.0.1'],
  );
  expect(rows).toEqual([{ n: BUDGET }]);
});

it('an Idempotency-Key used on one instance answers with the same workflow on the other, and is pruned after its TTL', async () => {
  await h.pool.query('DELETE FROM api_rate_limit'); // a fresh budget for this test
  const [a, b] = apis;
  const key = { 'idempotency-key': `shared-${uniqueSuffix()}` };
  const first = await replay(a.url, key);
  const second = await replay(b.url, key);
  expect(first.status).toBe(202);
  expect(second.status).toBe(202);
  const firstId = ((await first.json()) as { workflow_id: string }).workflow_id;
  expect(((await second.json()) as { workflow_id: string }).workflow_id).toBe(firstId);

  // The same key for a different request (another target topic) is refused on the other instance too.
  const other = await fetch(`${b.url}/replay/${eventId}?target_topic=${h.topics.jobs}`, {
    method: 'POST',
    headers: { 'x-requested-by': 'test', ...key },
  });
  expect(other.status).toBe(422);

  // Pruned: rows older than the TTL go, younger ones stay; a rate window with no request in the last minute goes.
  await h.pool.query(`UPDATE api_idempotency_keys SET created_at = now() - interval '2 days'`);
  await h.pool.query(`UPDATE api_rate_limit SET last_hit = now() - interval '2 minutes'`);
  expect(await pruneApiLimits(h.pool, 86_400)).toEqual({ rateRows: 1, keys: 1 });
  const reused = await replay(a.url, key);
  expect(reused.status).toBe(202);
  expect(((await reused.json()) as { workflow_id: string }).workflow_id).not.toBe(firstId);
});

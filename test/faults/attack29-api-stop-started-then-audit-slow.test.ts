import { Client, Connection } from '@temporalio/client';
import { Client as PgClient } from 'pg';
import { freePort } from '../../bench/support/ports';
import { exited, spawnCli, untilPrinted } from '../support/ingest-process';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';
import { curl } from '../support/curl';
import { uniqueSuffix } from '../support/env';

/**
 * attack29 (invariant 1: every replay workflow that exists was answered to its client with its id, unless the client
 * itself went away): SIGTERM to an `api` process while POST /replay/:id requests have STARTED their workflow in
 * Temporal and are writing their replay_audit row (route-helpers.ts recordStarted), and that write is slow (here a
 * lock on replay_audit held by another session: a migration, a long maintenance statement, plain lock contention).
 *
 * The request is decided once client.workflow.start returned: the workflow runs whatever the API does next. Yet
 * answer-at-close.ts waits for it only a quarter of what is left of the stop (about 2.4 s at SHUTDOWN_TIMEOUT=10s),
 * then aborts requestsAbandoned (which guards only startForRequest's start, already past) and fastify's
 * forceCloseConnections drops the connection. The client gets no answer (curl exit 52), never learns the workflow
 * id, and its retry (the route takes no Idempotency-Key obligation) starts a second replay of the same event.
 *
 * The test releases the lock once every client has its outcome, so the audit rows are written too: the replays are
 * fully accepted, recorded, and running, and their clients were told nothing.
 *
 * Observed (SHUTDOWN_TIMEOUT=10s, two runs): exit 0 after 2.44 s; 4 workflows started, 4 audit rows, every curl
 * exit 52 (empty reply, http_code 000), 0 workflow ids told.
 */
jest.setTimeout(120_000);

const SHUTDOWN_TIMEOUT_MS = 10_000;
const REQUESTS = 4;
let h: SinkHarness;
let temporal: Client;
let connection: Connection;
let eventId: string;

beforeAll(async () => {
  h = await createSinkHarness('a29auditslow');
  connection = await Connection.connect({ address: h.config.temporal.address });
  temporal = new Client({ connection, namespace: h.config.temporal.namespace });
  const { rows } = await h.pool.query<{ id: string }>(
    `INSERT INTO event_journal (tenant_id, topic, payload)
     VALUES ('acme', $1, '{"tenant_id":"acme","n":1}'::jsonb) RETURNING id`,
    [h.topics.leads],
  );
  eventId = rows[0].id;
}, 60_000);

afterAll(async () => {
  await connection?.close();
  await h?.close();
});

async function workflowsOn(queue: string): Promise<string[]> {
  const ids: string[] = [];
  for await (const wf of temporal.workflow.list({ query: `TaskQueue = '${queue}'` })) ids.push(wf.workflowId);
  return ids.sort();
}

it('SIGTERM while started replays write their audit row slowly: each started workflow is answered with its id', async () => {
  const port = await freePort();
  const queue = `a29-auditslow-${uniqueSuffix()}`;
  const api = spawnCli('api', {
    DATABASE_URL: h.databaseUrl,
    KAFKA_TOPICS: h.config.kafka.topics.join(','),
    KAFKA_GROUP_ID: h.config.kafka.groupId,
    TEMPORAL_TASK_QUEUE: queue,
    API_HOST: '127.0.0.1',
    API_PORT: String(port),
    API_TLS: '',
    AUTH_JWT_SECRET: '',
    AUTH_MODE: '',
    API_REPLAY_WAIT_MS: '20000',
    API_REPLAY_RATE_LIMIT_PER_MINUTE: '100000',
    SHUTDOWN_TIMEOUT: `${SHUTDOWN_TIMEOUT_MS}ms`,
    LOG_LEVEL: 'info',
  });
  const locker = new PgClient({ connectionString: h.databaseUrl });
  await locker.connect();
  try {
    await untilPrinted(api, 'Server listening at http://');
    const url = `http://127.0.0.1:${port}/replay/${eventId}`;
    await locker.query('BEGIN');
    // Blocks INSERTs (ROW EXCLUSIVE), not reads.
    await locker.query('LOCK TABLE replay_audit IN SHARE ROW EXCLUSIVE MODE');
    const requests = Array.from({ length: REQUESTS }, () =>
      curl(['-X', 'POST', '-H', 'X-Requested-By: attack29', url]),
    );
    // Every workflow started; every request now waits on its audit INSERT.
    await eventually(async () => (await workflowsOn(queue)).length === REQUESTS, 'the workflows started', 30_000);
    await new Promise((r) => setTimeout(r, 300));
    const signalled = Date.now();
    api.kill('SIGTERM');
    const answers = await Promise.all(requests);
    await locker.query('COMMIT'); // the audit rows go in now, while the API still stops
    const code = await Promise.race([exited(api), new Promise((r) => setTimeout(() => r('running'), 30_000))]);
    const tookMs = Date.now() - signalled;
    const started = await workflowsOn(queue);
    const told = answers.flatMap((a) => [...a.out.matchAll(/"workflow_id":"([^"]+)"/g)].map((m) => m[1])).sort();
    const outcomes = answers.map((a) => `curl ${a.exit} ${a.out.match(/HTTP (\d+)$/)?.[1]}`);
    const { rows } = await h.pool.query<{ n: string }>(`SELECT count(*) AS n FROM replay_audit WHERE event_id = $1`, [
      eventId,
    ]);
    console.log(
      `api exit ${String(code)} after ${tookMs} ms; outcomes ${outcomes.join(', ')}; ` +
        `workflows started ${started.length}, ids told to clients ${told.length}, audit rows ${rows[0].n}`,
    );
    expect(code).toBe(0);
    expect(tookMs).toBeLessThan(SHUTDOWN_TIMEOUT_MS + 1000);
    // No workflow a client was not told of.
    expect(told).toEqual(started);
  } finally {
    await locker.end().catch(() => undefined);
    api.kill('SIGKILL');
    await exited(api);
  }
});

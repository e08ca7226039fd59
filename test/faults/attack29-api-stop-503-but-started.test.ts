import net from 'node:net';
import { Client, Connection } from '@temporalio/client';
import { freePort } from '../../bench/support/ports';
import { exited, spawnCli, untilPrinted } from '../support/ingest-process';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';
import { curl } from '../support/curl';
import { uniqueSuffix } from '../support/env';

/**
 * attack29 (invariant 1: no workflow started for a request that was told 503 or dropped): SIGTERM to an `api` process
 * while POST /replay/batch requests have their start with Temporal on its way, and Temporal is slow to ANSWER the start
 * (it has received it and created the workflow; its reply is late: a loaded frontend, a slow network back). Here a TCP
 * proxy between the API and Temporal holds Temporal's replies once the API's connection is up.
 *
 * At the end of the answer grace (a quarter of what is left of SHUTDOWN_TIMEOUT), answer-at-close.ts aborts
 * requestsAbandoned; start-workflow.ts cancels the start on its way and turns it into a 503 "The API is stopping: the
 * workflow was not started" (or the connection is dropped first by forceCloseConnections). The workflow exists and
 * runs: a client told "not started, send it again" sends it again, and the batch is replayed twice.
 *
 * Observed (SHUTDOWN_TIMEOUT=10s, two runs): exit 0 after 2.4-2.6 s; 3 workflows started, all 3 clients answered
 * 503 {"message":"The API is stopping: the workflow was not started"}, 0 workflow ids told.
 */
jest.setTimeout(120_000);

const SHUTDOWN_TIMEOUT_MS = 10_000;
const REQUESTS = 3;
let h: SinkHarness;
let temporal: Client;
let connection: Connection;
let eventId: string;
let proxy: net.Server;
let holdReplies = false;
const sockets = new Set<net.Socket>();

beforeAll(async () => {
  h = await createSinkHarness('a29503started');
  connection = await Connection.connect({ address: h.config.temporal.address });
  temporal = new Client({ connection, namespace: h.config.temporal.namespace });
  const { rows } = await h.pool.query<{ id: string }>(
    `INSERT INTO event_journal (tenant_id, topic, payload)
     VALUES ('acme', $1, '{"tenant_id":"acme","n":1}'::jsonb) RETURNING id`,
    [h.topics.leads],
  );
  eventId = rows[0].id;
  const [host, port] = h.config.temporal.address.split(':');
  proxy = net.createServer((down) => {
    const up = net.connect(Number(port), host);
    sockets.add(down).add(up);
    down.on('data', (chunk) => up.write(chunk));
    // Temporal's replies: passed while holdReplies is off, held (never delivered) once it is on.
    up.on('data', (chunk) => {
      if (!holdReplies) down.write(chunk);
    });
    const end = () => {
      up.destroy();
      down.destroy();
    };
    down.on('close', end).on('error', end);
    up.on('close', end).on('error', end);
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
}, 60_000);

afterAll(async () => {
  for (const s of sockets) s.destroy();
  proxy?.close();
  await connection?.close();
  await h?.close();
});

async function workflowsOn(queue: string): Promise<string[]> {
  const ids: string[] = [];
  for await (const wf of temporal.workflow.list({ query: `TaskQueue = '${queue}'` })) ids.push(wf.workflowId);
  return ids.sort();
}

it('SIGTERM while Temporal is slow to answer started replays: no workflow runs for a request told 503 or dropped', async () => {
  const port = await freePort();
  const queue = `a29-503started-${uniqueSuffix()}`;
  const api = spawnCli('api', {
    DATABASE_URL: h.databaseUrl,
    KAFKA_TOPICS: h.config.kafka.topics.join(','),
    KAFKA_GROUP_ID: h.config.kafka.groupId,
    TEMPORAL_ADDRESS: `127.0.0.1:${(proxy.address() as net.AddressInfo).port}`,
    TEMPORAL_TASK_QUEUE: queue,
    API_HOST: '127.0.0.1',
    API_PORT: String(port),
    API_TLS: '',
    AUTH_JWT_SECRET: '',
    AUTH_MODE: '',
    API_REPLAY_RATE_LIMIT_PER_MINUTE: '100000',
    SHUTDOWN_TIMEOUT: `${SHUTDOWN_TIMEOUT_MS}ms`,
    LOG_LEVEL: 'info',
  });
  try {
    await untilPrinted(api, 'Server listening at http://');
    const url = `http://127.0.0.1:${port}/replay/batch`;
    const post = () =>
      curl([
        '-X',
        'POST',
        '-H',
        'X-Requested-By: attack29',
        '-H',
        'content-type: application/json',
        url,
        '-d',
        `{"ids":[${eventId}]}`,
      ]);
    // The API's Temporal connection is up (a first batch, answered).
    const first = await post();
    expect(first.out).toMatch(/HTTP 202$/);
    const warm = await workflowsOn(queue).then((ids) => ids.length);
    holdReplies = true;
    const requests = Array.from({ length: REQUESTS }, post);
    await eventually(
      async () => (await workflowsOn(queue)).length === warm + REQUESTS,
      'the workflows started',
      30_000,
    );
    await new Promise((r) => setTimeout(r, 300));
    const signalled = Date.now();
    api.kill('SIGTERM');
    const answers = await Promise.all(requests);
    const code = await Promise.race([exited(api), new Promise((r) => setTimeout(() => r('running'), 30_000))]);
    const tookMs = Date.now() - signalled;
    const started = (await workflowsOn(queue)).length - warm;
    const told = answers.filter((a) => /"workflow_id"/.test(a.out)).length;
    const outcomes = answers.map((a) => `curl ${a.exit} ${a.out.replace(/\s+/g, ' ').slice(0, 140)}`);
    console.log(
      `api exit ${String(code)} after ${tookMs} ms; workflows started ${started}, told ${told}\n${outcomes.join('\n')}`,
    );
    expect(code).toBe(0);
    expect(tookMs).toBeLessThan(SHUTDOWN_TIMEOUT_MS + 1000);
    expect(started).toBe(told);
  } finally {
    holdReplies = false;
    api.kill('SIGKILL');
    await exited(api);
  }
});

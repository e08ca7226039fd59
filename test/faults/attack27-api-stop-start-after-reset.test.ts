import { Client, Connection } from '@temporalio/client';
import { freePort } from '../../bench/support/ports';
import { exited, spawnCli, untilPrinted } from '../support/ingest-process';
import { freezableProxy, type FreezableProxy } from '../support/freezable-proxy';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';
import { curl } from '../support/curl';
import { uniqueSuffix } from '../support/env';

/**
 * attack27 (fix 2, efbc88d + b7da101): a POST /replay/:id in flight at SIGTERM whose workflow start takes longer than
 * answer-at-close's 2 s grace (Temporal answers 3 s late: a slow frontend, a GC pause, a leader change), with
 * SHUTDOWN_TIMEOUT=30s, so 28 s of the stop were still left.
 *
 * Invariant: no accepted replay without its id reaching the client. The close may give up on the request's answer
 * when its dependency stalls past the bound, but then the request must not go on to start the replay: a client that
 * got a reset retries (the route asks for no Idempotency-Key), and the replay runs twice.
 *
 * Attack: Temporal's connection goes through a freezable proxy, frozen while the handler's workflow start is in
 * flight; SIGTERM 0.5 s later; thawed 3 s after the signal.
 *
 * Observed live (two runs): the client's connection is dropped 2.01 s after the signal, at the end of the grace (curl
 * exit 52, http_code 000); the handler goes on regardless: once Temporal answers, the replay workflow is started (1
 * workflow listed on its task queue) but no replay_audit row is written for it (0: the stop had gone on to end the
 * API's pool), and the API exits 0 after 4.03 s. Nothing in answer-at-close.ts / startForRequest stops a handler whose
 * connection the close dropped, and the grace is a fixed 2 s even when the stop's clock has 28 s left.
 *
 * Fixed: the close waits up to a quarter of what is left of the stop (here about 7 s), so the start answers and the
 * route sends its 202 with the workflow id; a request still unanswered after that starts no workflow
 * (requestsAbandoned).
 */
jest.setTimeout(120_000);

const SHUTDOWN_TIMEOUT_MS = 30_000;
const THAW_AFTER_MS = 3_000;
let h: SinkHarness;
let proxy: FreezableProxy;
let eventId: string;
let connection: Connection;
let client: Client;

beforeAll(async () => {
  h = await createSinkHarness('a27apistart');
  const [host, port] = h.config.temporal.address.split(':');
  proxy = await freezableProxy(host, Number(port));
  const { rows } = await h.pool.query<{ id: string }>(
    `INSERT INTO event_journal (tenant_id, topic, payload)
     VALUES ('acme', $1, '{"tenant_id":"acme","n":1}'::jsonb) RETURNING id`,
    [h.topics.leads],
  );
  eventId = rows[0].id;
  connection = await Connection.connect({ address: h.config.temporal.address });
  client = new Client({ connection, namespace: h.config.temporal.namespace });
}, 60_000);

afterAll(async () => {
  await connection?.close();
  await proxy?.close();
  await h?.close();
});

async function workflowsOn(queue: string): Promise<string[]> {
  const ids: string[] = [];
  for await (const wf of client.workflow.list({ query: `TaskQueue='${queue}'` })) ids.push(wf.workflowId);
  return ids;
}

it('SIGTERM while POST /replay/:id waits 3 s for its workflow start: a reset client, and no replay started after it', async () => {
  const port = await freePort();
  const queue = `a27-apistart-${uniqueSuffix()}`;
  const api = spawnCli('api', {
    DATABASE_URL: h.databaseUrl,
    KAFKA_TOPICS: h.config.kafka.topics.join(','),
    KAFKA_GROUP_ID: h.config.kafka.groupId,
    TEMPORAL_ADDRESS: `127.0.0.1:${proxy.port}`,
    TEMPORAL_TASK_QUEUE: queue,
    API_HOST: '127.0.0.1',
    API_PORT: String(port),
    API_TLS: '',
    AUTH_JWT_SECRET: '',
    AUTH_MODE: '',
    API_REPLAY_WAIT_MS: '20000',
    SHUTDOWN_TIMEOUT: `${SHUTDOWN_TIMEOUT_MS}ms`,
    LOG_LEVEL: 'info',
  });
  try {
    await untilPrinted(api, 'Server listening at http://');
    // Warm the API's Temporal connection (and Kafka topic catalog) with a first replay, answered 202.
    const url = `http://127.0.0.1:${port}/replay/${eventId}`;
    const warm = await curl(['-X', 'POST', '-H', 'X-Requested-By: attack27', url]);
    expect(warm.out).toMatch(/HTTP 202$/);
    await eventually(async () => (await workflowsOn(queue)).length === 1, 'the warm-up workflow listed', 20_000);
    const auditBefore = await auditRows();

    proxy.freeze();
    const request = curl(['-X', 'POST', '-H', 'X-Requested-By: attack27', url]);
    await new Promise((r) => setTimeout(r, 500));
    const signalled = Date.now();
    api.kill('SIGTERM');
    const thawed = new Promise<void>((resolve) =>
      setTimeout(() => {
        proxy.thaw();
        resolve();
      }, THAW_AFTER_MS),
    );
    const answer = await request;
    const answeredMs = Date.now() - signalled;
    const code = await Promise.race([exited(api), new Promise((r) => setTimeout(() => r('running'), 40_000))]);
    const tookMs = Date.now() - signalled;
    await thawed;
    await new Promise((r) => setTimeout(r, 3000)); // visibility
    const workflows = (await workflowsOn(queue)).length - 1;
    const audit = (await auditRows()) - auditBefore;
    const status = answer.out.match(/HTTP (\d+)$/)?.[1];
    const result = {
      apiExit: code,
      apiInTime: tookMs < SHUTDOWN_TIMEOUT_MS,
      curlExit: answer.exit,
      status,
      gotWorkflowId: answer.out.includes('"workflow_id"'),
      workflowsStarted: workflows,
      auditRows: audit,
    };
    console.log(JSON.stringify({ ...result, answeredMs, tookMs, out: answer.out }));
    // Either the client learns the replay's id, or no replay was started for it.
    expect({ apiExit: result.apiExit, apiInTime: result.apiInTime }).toEqual({ apiExit: 0, apiInTime: true });
    expect({
      knowsWhatHappened: result.gotWorkflowId || (workflows === 0 && audit === 0),
      curlExit: result.curlExit,
    }).toEqual({ knowsWhatHappened: true, curlExit: 0 });
  } finally {
    proxy.thaw();
    api.kill('SIGKILL');
    await exited(api);
  }
});

async function auditRows(): Promise<number> {
  const { rows } = await h.pool.query<{ n: string }>(`SELECT count(*) AS n FROM replay_audit WHERE event_id = $1`, [
    eventId,
  ]);
  return Number(rows[0].n);
}

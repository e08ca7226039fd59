import { Client, Connection } from '@temporalio/client';
import { plainApiEnv, startApiProcess, type ApiProcess } from '../support/api-process';
import { uniqueSuffix } from '../support/env';
import { emailSubjectHash, postErasure, subjectStored } from '../support/erasure';
import { freezableProxy, type FreezableProxy } from '../support/freezable-proxy';
import { createSinkHarness, type SinkHarness } from '../support/sink';

/**
 * attack33 (bd5b4ec: "forgetting a subject locks its row and checks the claims ... so a request that claimed it
 * meanwhile keeps it; a resend dates its claim anew").
 *
 * Invariant: a subject's value stays stored while an erasure workflow that needs it runs or was accepted.
 *
 * Attack: two API instances on one database. A request with an Idempotency-Key reaches instance A, whose Temporal is
 * unreachable (a silent frontend: its connect times out after 3 s); before that, it has stored the subject and
 * claimed it for the workflow id its key names. Meanwhile the client's resend (same key) reaches instance B: it finds
 * the claim already there (dated anew, not its own), and starts that workflow: 202. Then A's connect fails, A answers
 * 503 and, its start refused, forgets "its" claim: the claim is one row per workflow, the very row the accepted
 * erasure's start relied on, and with it the subject goes. The accepted erasure runs without its subject.
 *
 * Observed: {first: 503, resend: 202, workflow: RUNNING, subjectStored: false}.
 * Fixed: a claim per request (sql/018, its own claim_id), so a refused request releases only its own claim; the
 * workflow's end and the prune (by the workflow's newest claim) release by workflow as before.
 */
jest.setTimeout(90_000);

let h: SinkHarness;
let connection: Connection;
let client: Client;
let silent: FreezableProxy;
let apiA: ApiProcess;
let apiB: ApiProcess;
const taskQueue = `a33-resend-${uniqueSuffix()}`;

beforeAll(async () => {
  h = await createSinkHarness('a33resend');
  connection = await Connection.connect({ address: h.config.temporal.address });
  client = new Client({ connection, namespace: h.config.temporal.namespace });
  const [host, port] = h.config.temporal.address.split(':');
  silent = await freezableProxy(host, Number(port));
  silent.freeze();
  apiA = await startApiProcess(h, {
    ...plainApiEnv(h, taskQueue, 5000),
    TEMPORAL_ADDRESS: `127.0.0.1:${silent.port}`,
  });
  apiB = await startApiProcess(h, plainApiEnv(h, taskQueue, 5000));
}, 60_000);

afterAll(async () => {
  await apiA?.stop();
  await apiB?.stop();
  await silent?.close();
  await connection?.close();
  await h?.close();
});

it('a first send refused by one instance releases only its own claim: the resend another accepted keeps the subject', async () => {
  const value = `a33-resend-${uniqueSuffix()}@example.com`;
  const key = `a33-${uniqueSuffix()}`;
  const hash = await emailSubjectHash(h.pool, value);
  const stored = () => subjectStored(h.pool, hash);

  const first = postErasure(apiA.url, value, 30_000, key);
  for (let i = 0; i < 100 && !(await stored()); i++) await new Promise((r) => setTimeout(r, 20));
  const resend = await postErasure(apiB.url, value, 30_000, key);
  const refused = await first;
  await new Promise((r) => setTimeout(r, 500));
  const workflowId = resend.body.erasure_id!;
  const status = await client.workflow
    .getHandle(workflowId)
    .describe()
    .then((d) => d.status.name);
  const outcome = {
    first: refused.status,
    resend: resend.status,
    workflow: status,
    subjectStored: await stored(),
  };
  await client.workflow
    .getHandle(workflowId)
    .terminate('attack33 cleanup')
    .catch(() => undefined);
  expect(outcome).toEqual({ first: 503, resend: 202, workflow: 'RUNNING', subjectStored: true });
});

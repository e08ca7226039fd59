import { Client, Connection } from '@temporalio/client';
import { uniqueSuffix } from '../support/env';
import { emailSubjectHash, postErasure, subjectStored } from '../support/erasure';
import { listenerPid } from '../support/stack';
import { plainApiEnv, startApiProcess, type ApiProcess } from '../support/api-process';
import { createSinkHarness, type SinkHarness } from '../support/sink';

/**
 * attack33 (477e805: "a start that times out (gRPC DEADLINE_EXCEEDED) is answered 504 naming the workflow ... an
 * erasure keeps its claim").
 *
 * Invariant (docs/integrity.md): a workflow that exists was named to its client, in a 2xx or in a 504.
 *
 * Attack: Temporal frozen (SIGSTOP of the server: a stalled frontend) while POST /erasure (dry_run false) is in its
 * start, the API's connection to Temporal up. The start has no deadline: it never times out, the 504 path is never
 * taken, and the request hangs (observed: no answer after 150 s). A client that gives up after 40 s (as any HTTP
 * client does) has no workflow id; once Temporal is thawed the start it had sent goes through and an erasure runs
 * that no answer named (resent without an Idempotency-Key, a second one).
 *
 * Observed: no answer within 40 s (the client's TimeoutError); after the thaw the unnamed workflow had started.
 * Fixed: every call the API makes to Temporal carries a deadline (TEMPORAL_CALL_DEADLINE_MS, 10 s, in the gateway), so
 * a frozen server gives DEADLINE_EXCEEDED and the start is answered 504 naming its workflow, its claim kept.
 */
jest.setTimeout(90_000);
const CLIENT_WAIT_MS = 40_000;
let h: SinkHarness;
let api: ApiProcess;
let connection: Connection;
let client: Client;
let frozen: number | undefined;
const taskQueue = `a33-nodl-${uniqueSuffix()}`;

beforeAll(async () => {
  h = await createSinkHarness('a33nodl');
  connection = await Connection.connect({ address: h.config.temporal.address });
  client = new Client({ connection, namespace: h.config.temporal.namespace });
  api = await startApiProcess(h, plainApiEnv(h, taskQueue, 5000));
}, 60_000);

afterAll(async () => {
  if (frozen) process.kill(frozen, 'SIGCONT');
  await api?.stop();
  await connection?.close();
  await h?.close();
});

it('POST /erasure with Temporal frozen is answered within its start deadline, a 504 naming the only workflow that may exist', async () => {
  // The API's Temporal connection is up before the freeze (steady state).
  const warm = await postErasure(api.url, `a33-warm-${uniqueSuffix()}@example.com`, CLIENT_WAIT_MS);
  expect(warm.status).toBe(202);
  const value = `a33-nodl-${uniqueSuffix()}@example.com`;
  const hash = await emailSubjectHash(h.pool, value);
  frozen = listenerPid(h.config.temporal.address);
  process.kill(frozen, 'SIGSTOP');
  const sentAt = Date.now();
  const answer = await postErasure(api.url, value, CLIENT_WAIT_MS);
  const answeredInTime = Date.now() - sentAt < 20_000;
  process.kill(frozen, 'SIGCONT');
  frozen = undefined;
  // Which erasure workflows exist for this subject once Temporal is back.
  let started: string[] = [];
  for (let i = 0; i < 40 && started.length === 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    const { rows } = await h.pool.query<{ workflow_id: string }>(
      'SELECT workflow_id FROM erasure_subject_claims WHERE subject_hash = $1',
      [hash],
    );
    started = [];
    for (const { workflow_id } of rows) {
      const exists = await client.workflow
        .getHandle(workflow_id)
        .describe()
        .then(
          () => true,
          () => false,
        );
      if (exists) started.push(workflow_id);
    }
  }
  const stored = await subjectStored(h.pool, hash);
  // The start's cancellation at its deadline may reach the thawed server with it (nothing starts) or not (the named
  // workflow starts): either way no workflow exists that its answer did not name, and the claim stays for it.
  expect({ answer, answeredInTime, started, subjectStored: stored }).toEqual({
    answer: { status: 504, body: expect.objectContaining({ workflow_id: expect.stringMatching(/^erasure-/) }) },
    answeredInTime: true,
    started: started.length ? [answer.body.workflow_id] : [],
    subjectStored: true,
  });
});

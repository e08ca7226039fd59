import { Client, Connection } from '@temporalio/client';
import net from 'node:net';
import { plainApiEnv, startApiProcess, type ApiProcess } from '../support/api-process';
import { uniqueSuffix } from '../support/env';
import { emailSubjectHash, postErasure, subjectStored } from '../support/erasure';
import { createSinkHarness, type SinkHarness } from '../support/sink';

/**
 * attack33 (477e805: "a start that times out is answered 504 naming the workflow (an erasure keeps its claim); only a
 * 503 before the start gives the replay rate slot back").
 *
 * Invariant: a subject's value stays stored while an erasure workflow that needs it runs or was accepted; a client
 * told 503 caused nothing.
 *
 * Attack: the API's link to Temporal drops after Temporal has carried out the erasure's start but before its answer
 * came back (a frontend restart, a proxy reset), and Temporal stays unreachable for the client's retries. The start
 * fails with gRPC UNAVAILABLE (14), not DEADLINE_EXCEEDED: the gateway answers 503 "Temporal is unreachable", and the
 * erasure route, seeing no workflow_id, treats it as a start refused before it was sent and forgets the subject. The
 * rate limit knows better (a start on its way keeps its slot); the claim does not: the erasure Temporal started runs
 * without its subject, and the client was told to send it again (a second erasure).
 *
 * Observed: {answer: 503, workflow: RUNNING, subjectStored: false}.
 * Fixed: a start sent and failed with no answer from Temporal (UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED, ...) is a
 * 504 naming the workflow, and the erasure route keeps its claim whenever the start was sent (startWasSent, the notion
 * the rate limit uses too).
 */
jest.setTimeout(90_000);

/** A proxy to Temporal that, once armed, lets the next call through, then cuts every link and refuses new ones. */
async function cuttingProxy(host: string, port: number) {
  let armed = false;
  let cut = false;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    if (cut) return client.destroy();
    const upstream = net.connect({ host, port });
    sockets.add(client).add(upstream);
    let sent = false;
    client.on('data', (chunk: Buffer) => {
      if (armed) sent = true;
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (cut) return;
      if (sent) {
        // The call has reached Temporal: its answer (and anything else) goes nowhere; Temporal gets time to finish it.
        cut = true;
        server.close();
        setTimeout(() => sockets.forEach((socket) => socket.destroy()), 500);
        return;
      }
      client.write(chunk);
    });
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    arm: () => (armed = true),
    close: () => {
      sockets.forEach((socket) => socket.destroy());
      server.close();
    },
  };
}

let h: SinkHarness;
let connection: Connection;
let client: Client;
let proxy: Awaited<ReturnType<typeof cuttingProxy>>;
let api: ApiProcess;

beforeAll(async () => {
  h = await createSinkHarness('a33unav');
  connection = await Connection.connect({ address: h.config.temporal.address });
  client = new Client({ connection, namespace: h.config.temporal.namespace });
  const [host, port] = h.config.temporal.address.split(':');
  proxy = await cuttingProxy(host, Number(port));
  api = await startApiProcess(h, {
    ...plainApiEnv(h, `a33-unav-${uniqueSuffix()}`, 5000),
    TEMPORAL_ADDRESS: `127.0.0.1:${proxy.port}`,
  });
}, 60_000);

afterAll(async () => {
  await api?.stop();
  proxy?.close();
  await connection?.close();
  await h?.close();
});

it('a start whose answer is lost with the link is a 504 naming its workflow, which keeps its subject', async () => {
  // The API's connection to Temporal is up (steady state).
  expect((await postErasure(api.url, `a33-warm-${uniqueSuffix()}@example.com`, 70_000)).status).toBe(202);
  const value = `a33-unav-${uniqueSuffix()}@example.com`;
  const hash = await emailSubjectHash(h.pool, value);
  // The workflow id the request claims, read while its start is on its way.
  let workflowId: string | undefined;
  proxy.arm();
  const answering = postErasure(api.url, value, 70_000);
  for (let i = 0; i < 200 && !workflowId; i++) {
    const { rows } = await h.pool.query<{ workflow_id: string }>(
      'SELECT workflow_id FROM erasure_subject_claims WHERE subject_hash = $1',
      [hash],
    );
    workflowId = rows[0]?.workflow_id;
    if (!workflowId) await new Promise((r) => setTimeout(r, 10));
  }
  const answer = await answering;
  const status = await client.workflow
    .getHandle(workflowId!)
    .describe()
    .then(
      (d) => d.status.name,
      () => 'not found',
    );
  const stored = await subjectStored(h.pool, hash);
  await client.workflow
    .getHandle(workflowId!)
    .terminate('attack33 cleanup')
    .catch(() => undefined);
  expect({ answer: answer.status, named: answer.body.workflow_id, workflow: status, subjectStored: stored }).toEqual({
    answer: 504,
    named: workflowId,
    workflow: 'RUNNING',
    subjectStored: true,
  });
});

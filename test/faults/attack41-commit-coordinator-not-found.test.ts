import net from 'node:net';
import { readToEnd } from '../../bench/support/topic-end';
import { COMMIT_SETTLE_MS, createKafka, createProducer } from '../../shared/kafka';
import { createLogger } from '../../shared/logger';
import { baseConfig, uniqueSuffix } from '../support/env';

/**
 * attack41 (code review of b28b401: commitSettled gave up early).
 *
 * Invariant 2: nothing doubled; and shared/kafka.ts commitSettled's contract: a commit without an answer is asked
 * again for COMMIT_SETTLE_MS before the send fails (and is fenced, and its page sent again by the activity's retry).
 *
 * Attack: a replay producer (real createProducer, real broker) sends one record. Its EndTxn(commit) is written and at
 * once its connection reset; for OUTAGE_MS (8 s, inside COMMIT_SETTLE_MS) from then every request of this client asking
 * for a coordinator (FindCoordinator) has its connection reset instead, as a restarting broker's connections are. The
 * broker got the EndTxn and committed. A send that rejects is sent again, as the activity's retry does.
 *
 * Observed before (13:41 UTC): the first ask failed with the reset (KafkaJSConnectionError, retriable: asked again);
 * the second ended with KafkaJSGroupCoordinatorNotFound (cluster.findGroupCoordinatorMetadata: every broker failed its
 * FindCoordinator; not retriable), which commitSettled took for an answer: the send rejected after 16224 ms (after the
 * fence, retried until the outage ended), the retry sent B again, and a read_committed consumer saw ["A","B","B"].
 * Fixed: commitErrorKind walks the error's causes and names: a coordinator not found, a connection error, retries
 * exceeded on one, is no answer; asked again, the send resolved after 15842 ms and B is read once (13:42 UTC).
 * (A refused connection, ECONNREFUSED, is retried by kafkajs's findGroupCoordinator for longer than COMMIT_SETTLE_MS
 * before it ends as KafkaJSNumberOfRetriesExceeded: tried with 12 s of refused connections, the old code passed too.)
 */
jest.setTimeout(120_000);

const OUTAGE_MS = 8_000;
const CLIENT_ID = 'a41-commit-unreachable';
const write = net.Socket.prototype.write;

afterAll(() => {
  net.Socket.prototype.write = write;
});

/** Whether chunk is a Kafka request with this API key (26 EndTxn, 10 FindCoordinator) of this test's client id. */
function isRequest(chunk: unknown, apiKey: number): chunk is Buffer {
  if (!Buffer.isBuffer(chunk) || chunk.length < 14 || chunk.readInt32BE(0) !== chunk.length - 4) return false;
  if (chunk.readInt16BE(4) !== apiKey) return false;
  const len = chunk.readInt16BE(12);
  return chunk.subarray(14, 14 + len).toString() === CLIENT_ID;
}

it('a commit whose coordinator is not found for a while settles as committed, and its record is read once', async () => {
  expect(OUTAGE_MS).toBeLessThan(COMMIT_SETTLE_MS - 3_000);
  const config = baseConfig();
  const log = createLogger(process.env.A41_LOG ?? 'silent');
  const kafka = createKafka(config.kafka.brokers, CLIENT_ID, log);
  const topic = `test.a41commit.${uniqueSuffix()}`;
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
  await admin.disconnect();
  const producer = createProducer(kafka, log);
  await producer.connect();
  // Warm: the producer knows the topic and the coordinator.
  await producer.send({ topic, messages: [{ key: 'A', value: 'A' }] });

  // The next EndTxn is written, then its connection reset; for OUTAGE_MS from then every connection of this client
  // that asks for a coordinator (FindCoordinator) is reset instead, as a restarting broker's are.
  let cutAt = 0;
  net.Socket.prototype.write = function (this: net.Socket, chunk: unknown, ...rest: unknown[]) {
    const reset = () => this.destroy(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }));
    if (cutAt > 0 && Date.now() < cutAt + OUTAGE_MS && isRequest(chunk, 10)) {
      reset();
      return true;
    }
    const written = (write as (...args: unknown[]) => boolean).call(this, chunk, ...rest);
    if (cutAt === 0 && isRequest(chunk, 26)) {
      cutAt = Date.now();
      reset();
    }
    return written;
  } as typeof write;

  const startedAt = Date.now();
  const first = await producer.send({ topic, messages: [{ key: 'B', value: 'B' }] }).then(
    () => ({ ok: true as const, at: Date.now() - startedAt }),
    (err: Error & { name: string }) => ({
      ok: false as const,
      error: `${err.name}: ${err.message}`,
      at: Date.now() - startedAt,
    }),
  );
  net.Socket.prototype.write = write;
  // The activity's retry of a failed send.
  if (!first.ok) await producer.send({ topic, messages: [{ key: 'B', value: 'B' }] });
  await producer.disconnect();

  const seen: string[] = [];
  await readToEnd(kafka, topic, (_p, m) => seen.push(m.value?.toString() ?? ''));
  console.log(JSON.stringify({ first, cut: cutAt > 0, outageMs: OUTAGE_MS, seen }));
  expect(cutAt).toBeGreaterThan(0);
  expect(first.ok).toBe(true);
  expect(first.at).toBeGreaterThanOrEqual(OUTAGE_MS - 1_000);
  expect(seen.sort()).toEqual(['A', 'B']);
});

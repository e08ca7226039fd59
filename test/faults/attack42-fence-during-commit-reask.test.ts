import net from 'node:net';
import { readToEnd } from '../../bench/support/topic-end';
import { createKafka, createProducer } from '../../shared/kafka';
import { createLogger } from '../../shared/logger';
import { baseConfig, uniqueSuffix } from '../support/env';

/**
 * attack42 (code review of b28b401: a fence arriving during the commit).
 *
 * Invariant 2: nothing doubled; and shared/kafka.ts createProducer's contract: a send's promise settles once what it
 * put into Kafka is settled for good, and rejects only if it is not in Kafka (the activity's retry sends it again).
 *
 * Attack: a replay producer (real createProducer, real broker) sends one record. Its EndTxn(commit) is written and at
 * once its connection reset (no answer: commitSettled asks again). Before the re-ask reaches the coordinator (its
 * FindCoordinator requests are reset until then), another party fences the producer's scope (fenceOthers, as an
 * erasure's waiter does for a cut-off holder; its own client): the coordinator had the commit, finishes it, then
 * bumps the epoch. The re-ask is refused INVALID_PRODUCER_EPOCH. A send that rejects is sent again, as the activity's
 * retry does.
 *
 * Also with the EndTxn dropped instead of written (never reached the coordinator): the fence aborts the transaction.
 *
 * Observed before (13:51 UTC): written: the send rejected with INVALID_PRODUCER_EPOCH after 645 ms though its
 * transaction was committed; the retry sent B again and a read_committed consumer saw ["A","B","B"].
 * Fixed: a re-ask refused by a fence leaves the outcome unknown from the answer; commitSettled reads the first
 * acknowledged record back read committed (committedReadBack): written, the record is found and the send resolves
 * (382 ms); dropped, it is read as aborted and the send rejects, its retry sends B. B is read once either way, and the
 * slot's next send goes through (its kafkajs producer, fenced, is renewed first: before that, the next send failed
 * "There is already an ongoing transaction for this producer").
 */
jest.setTimeout(120_000);

const CLIENT_ID = 'a42-fence-reask';

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

it.each([
  ['written', 'the commit landed before the fence: the send resolves'],
  ['dropped', 'the fence aborted the transaction: the send rejects, its retry sends it'],
] as const)('an EndTxn %s, its re-ask refused by a fence: %s; B read once', async (endTxn, _what) => {
  const config = baseConfig();
  const log = createLogger(process.env.A42_LOG ?? 'silent');
  const kafka = createKafka(config.kafka.brokers, CLIENT_ID, log);
  const topic = `test.a42fence.${uniqueSuffix()}`;
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
  await admin.disconnect();

  const producer = createProducer(kafka, log);
  await producer.connect();
  const fencer = createProducer(createKafka(config.kafka.brokers, 'a42-fencer', log), log);
  // Warm: the producer knows the topic and the coordinator.
  await producer.send({ topic, messages: [{ key: 'A', value: 'A' }] });

  let fence: Promise<string> | undefined;
  let fenced = false;
  net.Socket.prototype.write = function (this: net.Socket, chunk: unknown, ...rest: unknown[]) {
    const reset = () => this.destroy(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }));
    if (fence && !fenced && isRequest(chunk, 10)) {
      reset();
      return true;
    }
    const commit = !fence && isRequest(chunk, 26);
    const written =
      commit && endTxn === 'dropped' ? true : (write as (...args: unknown[]) => boolean).call(this, chunk, ...rest);
    if (commit) {
      reset();
      fence = fencer.fenceOthers(producer.fenceScope).then(
        () => {
          fenced = true;
          return 'fenced';
        },
        (err: Error) => {
          fenced = true;
          return `fence failed: ${err.message}`;
        },
      );
    }
    return written;
  } as typeof write;

  const startedAt = Date.now();
  const first = await producer.send({ topic, messages: [{ key: 'B', value: 'B' }] }).then(
    () => ({ ok: true as const, at: Date.now() - startedAt }),
    (err: Error & { type?: string }) => ({
      ok: false as const,
      error: `${err.type ?? err.name}: ${err.message}`,
      at: Date.now() - startedAt,
    }),
  );
  net.Socket.prototype.write = write;
  const fenceOutcome = await fence;
  // The activity's retry of a failed send.
  if (!first.ok) await producer.send({ topic, messages: [{ key: 'B', value: 'B' }] });
  // The next send on the fenced slot (slots are taken last in, first out) goes through at once.
  const next = await producer.send({ topic, messages: [{ key: 'C', value: 'C' }] }).then(
    () => 'sent',
    (err: Error) => err.message,
  );
  await producer.disconnect();
  await fencer.disconnect();

  const seen: string[] = [];
  await readToEnd(kafka, topic, (_p, m) => seen.push(m.value?.toString() ?? ''));
  console.log(JSON.stringify({ first, fenceOutcome, next, seen }));
  expect(fenceOutcome).toBe('fenced');
  expect(first).toMatchObject(endTxn === 'written' ? { ok: true } : { ok: false, error: /INVALID_PRODUCER_EPOCH/ });
  expect(next).toBe('sent');
  expect(seen.sort()).toEqual(['A', 'B', 'C']);
});

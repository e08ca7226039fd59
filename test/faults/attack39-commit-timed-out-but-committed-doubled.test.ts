import net from 'node:net';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { createActivities } from '../../activities';
import { readToEnd } from '../../bench/support/topic-end';
import { createKafka, createProducer } from '../../shared/kafka';
import { createLogger } from '../../shared/logger';
import { seedJournal } from '../support/journal';
import { createSinkHarness, type SinkHarness } from '../support/sink';
import { kafkaBrokerPid } from '../support/stack';
import { activityDeps } from '../support/temporal';

/**
 * attack39 against f80d5e0 (replay sends as Kafka transactions, fenced on failure).
 *
 * Invariant 2: nothing doubled: a replay's records, as a read_committed consumer sees them, are each present exactly
 * once per replay after fences, aborts and activity retries. And shared/kafka.ts createProducer's contract: a send's
 * promise "settles only once what it put into Kafka is settled for good: committed, or fenced", a send that failed is
 * fenced (its transaction aborted) before it rejects, so the activity's retry may send the page again.
 *
 * Attack: the real replayBatchPage activity (MockActivityEnvironment, real createProducer, real Postgres/Kafka)
 * replays a page of one row. Its produce is acknowledged; as its EndTxn(commit) request is about to be written, the
 * broker is frozen (SIGSTOP; the request is held in the socket write only until the broker is stopped, then written
 * unchanged). The broker is thawed 20 s later (well inside the 60 s transaction timeout). The attempt's outcome is
 * recorded, then the activity is run again as Temporal's retry of a failed attempt does.
 *
 * Observed (run 04:08 UTC, 24 s): the first attempt REJECTED after 20473 ms with "Request EndTxn(key: 26, version: 1)
 * timed out" (kafkajs' commit is a single EndTxn without retry: its 15 s request timeout fails it; the rejection waited
 * for the fence, done after the thaw at 20011 ms), yet the frozen
 * broker, once thawed, read the EndTxn from the still-open old connection and COMMITTED the transaction before the
 * fence's InitProducerId (which needs ApiVersions, metadata and FindCoordinator first on its new connection) got to
 * the coordinator; the fence then bumped an epoch with nothing open to abort. The retry published 1 again: a
 * read_committed consumer of the topic sees ["seed-0","seed-1","seed-1"]: row B twice for one replay.
 *
 * Suspected cause: shared/kafka.ts sending() (the `await transaction.commit()` inside the try whose catch fences and
 * rethrows, ~line 405-410): a commit whose request may have reached the coordinator is ambiguous, and a fence after it
 * cannot abort a transaction the coordinator already committed; the send rejects as "not written" though it is
 * committed. kafkajs' eosManager.commit (node_modules/kafkajs/src/producer/eosManager/index.js:288) sends EndTxn once,
 * so any request timeout on it is such an ambiguous failure.
 *
 * Fixed: a commit without an answer is asked again (shared/kafka.ts commitSettled; kafkajs patched to keep the
 * transaction open after a failed EndTxn) until the coordinator answers: here the second ask got "concurrent
 * transactions" while the thawed broker wrote the first one's markers, the third success. The attempt resolved after
 * 20066 ms and the topic holds B once (run 10:38 UTC).
 * Again (14:09 UTC, 3 of 5 runs): the re-ask's "concurrent transactions" came after the thaw, when COMMIT_SETTLE_MS,
 * counted from the first ask's start, was over (the first ask had taken 15 s of it): rejected at 20.2 s, B doubled.
 * The time is now counted from the first ask's failure: 3 of 3 runs resolved (20.07 to 20.57 s), B once.
 */
jest.setTimeout(180_000);

let h: SinkHarness;
let frozen: number | undefined;
const CLIENT_ID = 'a39-commit-doubled';
const write = net.Socket.prototype.write;

beforeAll(async () => {
  h = await createSinkHarness('a39_commit_doubled');
}, 60_000);
afterAll(async () => {
  net.Socket.prototype.write = write;
  if (frozen) process.kill(frozen, 'SIGCONT');
  await h?.close();
});

/** Whether chunk is a Kafka EndTxn request (API key 26) of this test's client id. */
function isEndTxn(chunk: unknown): chunk is Buffer {
  if (!Buffer.isBuffer(chunk) || chunk.length < 14 || chunk.readInt32BE(0) !== chunk.length - 4) return false;
  if (chunk.readInt16BE(4) !== 26) return false;
  const len = chunk.readInt16BE(12);
  return chunk.subarray(14, 14 + len).toString() === CLIENT_ID;
}

it('a replay page whose commit timed out but was committed is not committed twice after its retry', async () => {
  const [a, b] = await seedJournal(h.pool, 2, { topics: [h.topics.leads], tenants: ['acme'], label: 'a39d' });
  const keyOf = async (id: number) =>
    (await h.pool.query<{ k: string }>('SELECT kafka_key AS k FROM event_journal WHERE id = $1', [id])).rows[0].k;
  const [keyA, keyB] = [await keyOf(a), await keyOf(b)];
  const log = createLogger('silent');
  const producer = createProducer(createKafka(h.config.kafka.brokers, CLIENT_ID, log), log);
  await producer.connect();
  const activities = createActivities(activityDeps(h, producer));
  const run = <I, O>(fn: (input: I) => Promise<O>, input: I): Promise<O> =>
    new MockActivityEnvironment({}, { logger: new DefaultLogger('ERROR') }).run(fn, input);
  const page = { source: 'batch' as const, replayId: 'a39-doubled' };
  // Warm: a first page sent and committed, so the producer knows the topic and the coordinator.
  await run(activities.replayBatchPage, { ...page, ids: [a] });

  // The next EndTxn of this client is written only once the broker is frozen.
  let held: (() => void) | undefined;
  let armed = true;
  net.Socket.prototype.write = function (this: net.Socket, chunk: unknown, ...rest: unknown[]) {
    if (armed && isEndTxn(chunk)) {
      armed = false;
      held = () => (write as (...args: unknown[]) => boolean).call(this, chunk, ...rest);
      return true;
    }
    return (write as (...args: unknown[]) => boolean).call(this, chunk, ...rest);
  } as typeof write;
  const startedAt = Date.now();
  const first = run(activities.replayBatchPage, { ...page, ids: [b] }).then(
    (r) => ({ ok: true as const, r, at: Date.now() - startedAt }),
    (err: Error) => ({ ok: false as const, error: err.message, at: Date.now() - startedAt }),
  );
  for (let i = 0; i < 400 && !held; i++) await new Promise((r) => setTimeout(r, 25));
  expect(held).toBeDefined();
  frozen = kafkaBrokerPid(h.config.kafka.brokers);
  process.kill(frozen, 'SIGSTOP');
  const frozenAt = Date.now();
  held!();
  net.Socket.prototype.write = write;
  await new Promise((r) => setTimeout(r, 20_000));
  process.kill(frozen, 'SIGCONT');
  frozen = undefined;
  const thawedAt = Date.now();
  const outcome = await first;

  // Temporal retries a failed attempt: the page again.
  const retried = outcome.ok ? undefined : await run(activities.replayBatchPage, { ...page, ids: [b] });
  await producer.disconnect();

  const keys: string[] = [];
  // The broker, just thawed, may answer "not the leader" for a moment.
  for (let attempt = 1; ; attempt++) {
    try {
      keys.splice(0);
      await readToEnd(h.kafka, h.topics.leads, (_p, m) => keys.push(m.key?.toString() ?? ''));
      break;
    } catch (err) {
      if (attempt === 10) throw err;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  const count = (k: string) => keys.filter((x) => x === k).length;
  console.log(
    JSON.stringify({
      outcome,
      retried,
      frozenMs: thawedAt - frozenAt,
      keyA,
      keyB,
      committed: keys,
    }),
  );
  expect(count(keyA)).toBe(1);
  // One replay ("a39-doubled") of B: once, whether its first attempt failed or not.
  expect(count(keyB)).toBe(1);
});

import { Kafka, logLevel } from 'kafkajs';
import { publishMessages } from '../../activities/publish';
import { awaitReplaySends, withErasuresChecked } from '../../repository/erasure';
import { createPool, type Pool } from '../../shared/db';
import { createProducer, type ReplayProducer } from '../../shared/kafka';
import { createLogger } from '../../shared/logger';
import { createTestDatabase } from '../support/database';
import { baseConfig, uniqueSuffix } from '../support/env';
import { kafkaBrokerPid } from '../support/stack';

/**
 * attack38 against 922b557 (the replay-send/erasure barrier: repository/erasure.ts withErasuresChecked and
 * awaitReplaySends, shared/barrier.ts holdBarrier's `keep`, activities/publish.ts publishMessages' track).
 *
 * Invariant (docs/lifecycle.md, "Erasure barrier"; barrier invariant 1): once an erasure's wait for the replay sends
 * has returned (and so once the erasure has completed), no replay page that checked before its ids were recorded
 * puts an erased row into Kafka.
 *
 * Attack: a replay page (withErasuresChecked, the project's producer, createProducer) checks its row (not erased yet)
 * and sends it while the broker is frozen (SIGSTOP: a GC stall, a paused VM). The produce request is written into the
 * broker's socket. The erasure then records the row's id and waits (awaitReplaySends). kafkajs gives the send up
 * (request timeouts, its finite retries): the kept send settles, the page's barrier row is deleted and the erasure's
 * wait returns, so the erasure completes. The broker is thawed 1.5 s later: the produce request still in its socket
 * is read and appended. The Kafka client here has a 1.5 s request timeout (the project's is 15 s, with nested retries:
 * the same happens after minutes of freeze instead of seconds: see the end-to-end run in the report). The topic uses
 * LogAppendTime, so each message's timestamp is when Kafka took it.
 *
 * Observed: the send failed in kafkajs ("Request Produce(key: 0, version: 7) timed out") 14 s into the freeze, the
 * page's barrier row was deleted and the erasure's wait returned (erasureWaitedMs 13963); the erased row (id 2) was
 * appended to the topic 1505 ms after the wait returned, i.e. at the thaw. A produce request kafkajs timed out on is
 * not a send that ended: the broker still holds it (its socket), and appends it when it runs again.
 * Suspected cause: activities/publish.ts (track(sent): the kept promise is kafkajs' send, which settles at its request
 * timeout / last retry) and shared/barrier.ts holdBarrier end() (the row is deleted once the kept sends settled): a
 * settled send is taken for "nothing more will be appended", which a frozen or slow broker does not honour.
 *
 * Fixed: every replay send is a Kafka transaction (shared/kafka.ts createProducer); one that failed is fenced (its
 * transactional id's epoch bumped, its transaction aborted once every partition has its marker) before the send
 * settles, so the page holds the barrier until nothing of it can be appended any more: the erasure's wait returns
 * only after the thaw and the fence, the late request is appended before that and aborted. The broker is now thawed
 * at a fixed time (a wait that returns while the broker is frozen is the failure).
 */
jest.setTimeout(180_000);

/** When the broker runs again: well after kafkajs gave the send up (its request timeouts and retries, ~14 s here). */
const THAW_AFTER_MS = 20_000;

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let pool: Pool;
let producer: ReplayProducer | undefined;
let frozen: number | undefined;
let frozenAt = 0;
const config = baseConfig();
/** Armed: the broker is frozen (SIGSTOP) the moment this client is about to write its next Produce request. */
let freezeAtProduce = false;
const kafka = new Kafka({
  clientId: 'a38-timedout',
  brokers: config.kafka.brokers,
  connectionTimeout: 1000,
  requestTimeout: 1500,
  enforceRequestTimeout: true,
  retry: { initialRetryTime: 100, retries: 1, maxRetryTime: 500 },
  logLevel: logLevel.DEBUG,
  // kafkajs logs each request just before it writes it to the socket: the freeze then leaves the Produce request in
  // the stopped broker's socket (not an earlier request of the transaction, FindCoordinator or AddPartitionsToTxn).
  logCreator:
    () =>
    ({ log }) => {
      if (freezeAtProduce && String(log.message).startsWith('Request Produce')) {
        freezeAtProduce = false;
        frozen = kafkaBrokerPid(config.kafka.brokers);
        process.kill(frozen, 'SIGSTOP');
        frozenAt = Date.now();
      }
    },
});

beforeAll(async () => {
  db = await createTestDatabase(config.databaseUrl, 'a38_send_timed_out');
  pool = createPool(db.databaseUrl, 6, createLogger('silent'));
});
afterAll(async () => {
  if (frozen) process.kill(frozen, 'SIGCONT');
  await producer?.disconnect().catch(() => undefined);
  await pool?.end();
  await db?.drop();
});

it('a send kafkajs gave up on while the broker was frozen is not appended after the erasure wait returned', async () => {
  const topic = `a38-timedout-${uniqueSuffix()}`;
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({
    topics: [{ topic, numPartitions: 1, configEntries: [{ name: 'message.timestamp.type', value: 'LogAppendTime' }] }],
    waitForLeaders: true,
  });
  await admin.disconnect();
  producer = createProducer(kafka, createLogger('silent'));
  await producer.connect();
  const message = (id: number) => ({ topic, key: Buffer.from('subject'), value: JSON.stringify({ id }), headers: {} });
  await publishMessages(producer, [message(1)]); // warm: metadata and the topic catalog known

  const erasedId = 2;
  freezeAtProduce = true;
  // The page: checked (not erased yet), then sent: the broker freezes as the Produce request goes out.
  let checked = false;
  const page = withErasuresChecked(pool, [erasedId], producer!, async (erased, keep) => {
    checked = true;
    if (erased.has(erasedId)) return 'left out';
    await publishMessages(producer!, [message(erasedId)], { track: keep });
    return 'sent';
  }).then(
    (r) => r,
    (err: Error) => `send failed: ${err.message}`,
  );
  for (let i = 0; i < 500 && (!checked || frozen === undefined); i++) await new Promise((r) => setTimeout(r, 10));
  expect({ checked, frozen: frozen !== undefined }).toEqual({ checked: true, frozen: true });
  await new Promise((r) => setTimeout(r, 300)); // the produce request written into the broker's socket
  // The erasure: its ids recorded, then its wait for the replay sends.
  await pool.query(`INSERT INTO erased_events (event_id, erasure_id) VALUES ($1, 'a38-erasure')`, [erasedId]);
  let erasureDoneAt: number | undefined;
  const waited = awaitReplaySends(pool, { timeoutMs: 150_000 }).then(() => (erasureDoneAt = Date.now()));
  // kafkajs gives the send up ~14 s into the freeze; the broker is thawed well after that.
  await new Promise((r) => setTimeout(r, Math.max(0, frozenAt + THAW_AFTER_MS - Date.now())));
  const returnedWhileFrozen = erasureDoneAt !== undefined;
  process.kill(frozen!, 'SIGCONT');
  frozen = undefined;
  const thawedAt = Date.now();
  await waited;
  const pageResult = await page;

  // What the topic holds: every record appended (read uncommitted), and what consumers of committed records see.
  const read = async (readUncommitted: boolean) => {
    const seen: { id: number; appendedAt: number }[] = [];
    const consumer = kafka.consumer({ groupId: `${topic}-read-${readUncommitted}`, readUncommitted });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message: m }) => {
        seen.push({ id: JSON.parse(m.value!.toString()).id as number, appendedAt: Number(m.timestamp) });
      },
    });
    for (let i = 0; i < 50 && !seen.some((m) => m.id === erasedId); i++) await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => setTimeout(r, 2000));
    await consumer.disconnect();
    return seen;
  };
  const seen = await read(true);
  const committed = await read(false);
  console.log(
    JSON.stringify({
      pageResult,
      returnedWhileFrozen,
      erasureWaitedMs: erasureDoneAt! - frozenAt,
      msAfterThaw: erasureDoneAt! - thawedAt,
      seen: seen.map((m) => ({ id: m.id, msAfterErasureWait: m.appendedAt - erasureDoneAt! })),
      committed: committed.map((m) => m.id),
    }),
  );
  expect(returnedWhileFrozen).toBe(false);
  // Not vacuous: the Produce request caught in the frozen broker was appended after the thaw (and aborted).
  expect(seen.filter((m) => m.id === erasedId).length).toBeGreaterThanOrEqual(1);
  // The send that kafkajs gave up on was aborted (fenced): no consumer of committed records sees it.
  expect(committed.map((m) => m.id)).toEqual([1]);
  const after = seen.filter((m) => m.id === erasedId && m.appendedAt > erasureDoneAt!);
  expect(after.map((m) => ({ id: m.id, msAfterErasureWait: m.appendedAt - erasureDoneAt! }))).toEqual([]);
});

import net from 'node:net';
import { publishMessages } from '../../activities/publish';
import { awaitReplaySends, withErasuresChecked } from '../../repository/erasure';
import { readToEnd } from '../../bench/support/topic-end';
import { createPool, type Pool } from '../../shared/db';
import { createKafka, createProducer } from '../../shared/kafka';
import { createLogger } from '../../shared/logger';
import { createTestDatabase } from '../support/database';
import { baseConfig, uniqueSuffix } from '../support/env';

/**
 * attack39 against f80d5e0 (barrier rows carry the producer's fence scope; a waiter fences an expired row's scope
 * before it counts the holder gone: shared/kafka.ts fenceScopeOf "its process gone, or cut off for a lease: ... so
 * that nothing it sent before is appended visibly from now on").
 *
 * Invariant 1: once an erasure's wait (awaitReplaySends) has returned, no row it erased becomes visible to a
 * read_committed consumer afterwards.
 *
 * Attack: a live worker (in this process: the real createProducer, withErasuresChecked with its fenceScope as
 * activities/range.ts passes it, publishMessages with `keep`) holds the barrier for a page of row B and checks it (not
 * erased). Its Postgres connections then go silent (a TCP proxy between its pool and Postgres stops forwarding: a
 * network partition), so its lease is not renewed; its send has not gone out yet (the page is slow to get its turn:
 * here a gate the test opens). The erasure (on its own pool, reaching Postgres) records B and waits, fencing as
 * activities/erasure.ts does: the holder's row expires, the waiter fences the scope (all 8 ids), deletes the row and
 * returns. Then the page's send goes out: it is the worker's first send, on a slot whose kafkajs producer never
 * connected (connect() opens slot 0 only; sends take slots from the other end), so its connect is an InitProducerId
 * AFTER the fence: a newer epoch, which the fence did nothing against. The transaction commits.
 *
 * Observed (run 04:14 UTC, 127 s): the erasure's wait returned 121142 ms after the cut (row expired, scope fenced,
 * row deleted); the page's send then resolved 94 ms after the wait returned ("sent"), and a read_committed consumer of
 * the topic sees [2]: the erased row B, committed after the erasure's wait.
 *
 * Suspected cause: shared/kafka.ts fence semantics: fencing a scope's ids bumps their epochs once, but the live
 * producer of that scope re-initialises the same ids later (first connect of a slot in sending(), `slot.connecting ??=
 * slot.producer.connect()`; also `fence(slot, 'renewed')` for a stale slot and the fence after any failed send), each
 * time taking a newer epoch, so the waiter's fence does not stop that producer's later sends; shared/barrier.ts
 * holdBarrier does not stop or check fn's send once its lease could not be renewed (the waiter counts it gone).
 *
 * Fixed: the waiter claims an expired row (sql/022) before it fences the row's scope, and renewals leave a claimed row
 * alone; every replay-producer send made under the barrier (withErasuresChecked runs the page in withSendGuard with
 * holdBarrier's `held`) asks, once its slot's epoch is fixed and before it produces, whether the row is still
 * unexpired and unclaimed: here the holder's connections are silent, so the question gets no answer and the send
 * fails with nothing sent. Run 11:05 UTC: the send failed ("Checking barrier holder …: Postgres did not answer in
 * 5000 ms"), the erasure's wait returned 121.9 s after the cut, and the topic holds nothing of B.
 */
jest.setTimeout(300_000);

const config = baseConfig();
const log = createLogger('silent');
const kafka = createKafka(config.kafka.brokers, 'a39-cut-off', log);
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let pool: Pool;
let holderPool: Pool;
let proxy: net.Server;
let cut = false;
const sockets = new Set<net.Socket>();

beforeAll(async () => {
  db = await createTestDatabase(config.databaseUrl, 'a39_cut_off');
  pool = createPool(db.databaseUrl, 6, log);
  const target = new URL(db.databaseUrl);
  proxy = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    sockets.add(client).add(upstream);
    client.on('data', (d) => cut || upstream.write(d));
    upstream.on('data', (d) => cut || client.write(d));
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const proxied = new URL(db.databaseUrl);
  proxied.hostname = '127.0.0.1';
  proxied.port = String((proxy.address() as net.AddressInfo).port);
  holderPool = createPool(proxied.toString(), 6, log);
});
afterAll(async () => {
  for (const s of sockets) s.destroy();
  proxy?.close();
  await holderPool?.end().catch(() => undefined);
  await pool?.end();
  await db?.drop();
});

it("a holder cut off for a lease does not send an erased row after the erasure's wait returned", async () => {
  const topic = `a39-cut-off-${uniqueSuffix()}`;
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
  await admin.disconnect();
  const B = 2;

  const producer = createProducer(kafka, log);
  await producer.connect();
  let checked = false;
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  let sentAt: number | undefined;
  const holding = withErasuresChecked(holderPool, [B], producer, async (erased, keep) => {
    checked = true;
    await gate; // the page waits for its turn
    if (erased.has(B)) return 'left out';
    await publishMessages(
      producer,
      [{ topic, key: Buffer.from('subject'), value: JSON.stringify({ id: B }), headers: {} } as never],
      { track: keep },
    );
    sentAt = Date.now();
    return 'sent';
  }).then(
    (r) => r,
    (err: Error) => `failed: ${err.message}`,
  );
  for (let i = 0; i < 200 && !checked; i++) await new Promise((r) => setTimeout(r, 50));
  expect(checked).toBe(true);
  cut = true; // the worker's Postgres connections go silent
  const cutAt = Date.now();

  // The erasure: B recorded, then its wait, fencing as activities/erasure.ts does.
  await pool.query(`INSERT INTO erased_events (event_id, erasure_id) VALUES ($1, 'a39-erasure')`, [B]);
  const fencer = createProducer(kafka, log);
  await awaitReplaySends(pool, { timeoutMs: 250_000, fence: (scope) => fencer.fenceOthers(scope) });
  const erasureDoneAt = Date.now();

  open(); // the page's turn comes
  const outcome = await Promise.race([holding, new Promise((r) => setTimeout(() => r('still sending'), 40_000))]);
  await producer.disconnect();

  const committed: number[] = [];
  await readToEnd(kafka, topic, (_p, m) => committed.push(JSON.parse(m.value!.toString()).id as number));
  console.log(
    JSON.stringify({
      erasureWaitedAfterCutMs: erasureDoneAt - cutAt,
      outcome,
      sentAfterErasureMs: sentAt === undefined ? null : sentAt - erasureDoneAt,
      committed,
    }),
  );
  expect(committed).toEqual([]);
});

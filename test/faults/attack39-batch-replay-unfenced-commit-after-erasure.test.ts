import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { awaitReplaySends } from '../../repository/erasure';
import { BARRIER_LEASE_MS } from '../../shared/barrier';
import { createProducer } from '../../shared/kafka';
import { createLogger } from '../../shared/logger';
import { seedJournal } from '../support/journal';
import { createSinkHarness, type SinkHarness } from '../support/sink';
import { kafkaBrokerPid } from '../support/stack';

/**
 * attack39 against f80d5e0 (replay sends as Kafka transactions; barrier rows carry the producer's fence scope, fenced by
 * an erasure's waiter once expired).
 *
 * Invariant 1 (docs/lifecycle.md "Erasure barrier"): once an erasure's wait for the replay sends (awaitReplaySends)
 * has returned, no row it erased becomes visible to a read_committed consumer afterwards, whatever happens to the
 * replay send (worker SIGKILLed, broker frozen).
 *
 * Attack: a worker process (a child running dist/: the real createReplayActivities().replayBatchPage in
 * MockActivityEnvironment, on the real createProducer) replays a batch page of one journal row (id B). Its send is one
 * Kafka transaction; its EndTxn(commit) request is held for a moment in the child's socket write (a network delay:
 * the request is otherwise untouched) while the broker is frozen (SIGSTOP), then written into the broker's socket,
 * and the worker is SIGKILLed. The erasure records B as erased and waits (awaitReplaySends with `fence`, as
 * activities/erasure.ts does). The broker is thawed once the dead worker's barrier row has expired (lease + 5 s).
 *
 * Observed (run 04:01 UTC, 135 s): the child printed ready/commit/written and was killed; the erasure's wait returned
 * 120018 ms after the kill, 5010 ms BEFORE THE THAW (broker frozen 125586 ms; the row expired, nothing was fenced);
 * after the thaw the broker read the dead worker's EndTxn(commit) and committed the transaction: a read_committed
 * consumer sees ["seed-0","seed-1"], i.e. the erased row B (key seed-1) became visible after the erasure's wait.
 * A second run (04:04, 143 s): the wait again returned while frozen (120100 ms after the kill, 4933 ms before the
 * thaw), but that time the coordinator's transaction timeout (60 s, exceeded while frozen) aborted the transaction
 * before the handler read the commit: committed ["seed-0"]. Which of the two the broker does first at the thaw is a
 * race; the wait returning while the commit sits unfenced in the broker happens every run (third run 04:07, 144 s:
 * returned 120020 ms after the kill, 4984 ms before the thaw), and is asserted with it. The
 * range and cold-replay paths pass their producer's fence scope; the batch (and single-event) replay does not, so its
 * holder row has fence NULL and an expired one is counted gone without any fence.
 *
 * Suspected cause: activities/replay.ts:66 and :70 call withErasuresChecked(pool, ids, fn) without the 4th argument
 * (replayFencing(producer)?.fenceScope), so the row is written with fence NULL (shared/barrier.ts holdBarrier), and
 * awaitBarrierHolders only fences expired rows `fence IS NOT NULL` (shared/barrier.ts look()).
 *
 * Fixed: withErasuresChecked takes the producer a page sends on (no longer an optional scope a caller can leave out)
 * and records its fence scope itself; single and batch replays pass theirs like the range pages do.
 */
jest.setTimeout(300_000);

const DIST = path.resolve(__dirname, '../../dist');
let h: SinkHarness;
let child: ChildProcess | undefined;
let frozen: number | undefined;

beforeAll(async () => {
  h = await createSinkHarness('a39_batch_unfenced');
}, 60_000);
afterAll(async () => {
  if (frozen) process.kill(frozen, 'SIGCONT');
  child?.kill('SIGKILL');
  await h?.close();
});

/**
 * The worker: the real batch replay activity. "ready" once a first page (id A) is replayed (producer warm); on "go"
 * replays a page of id B, holding its EndTxn request's write until "release".
 */
const WORKER = `
const net = require('node:net');
const { createInterface } = require('node:readline');
const { MockActivityEnvironment } = require('@temporalio/testing');
const { DefaultLogger } = require('@temporalio/worker');
const { createReplayActivities } = require(${JSON.stringify(`${DIST}/activities/replay`)});
const { loadConfig } = require(${JSON.stringify(`${DIST}/shared/config`)});
const { createKafka, createProducer } = require(${JSON.stringify(`${DIST}/shared/kafka`)});
const { createPool } = require(${JSON.stringify(`${DIST}/shared/db`)});
const { createLogger } = require(${JSON.stringify(`${DIST}/shared/logger`)});
const { createMetrics } = require(${JSON.stringify(`${DIST}/shared/metrics`)});
const { loadLineageKey } = require(${JSON.stringify(`${DIST}/journal/lineage`)});
const [a, b] = process.argv.slice(1).map(Number);
const config = loadConfig(process.env);
const log = createLogger('silent');
const pool = createPool(config.databaseUrl, 6, log);
const producer = createProducer(createKafka(config.kafka.brokers, 'a39-worker', log), log);

// EndTxn is Kafka API key 26: its request, once armed, is written only when the parent says "release".
const write = net.Socket.prototype.write;
let armed = false;
let held;
net.Socket.prototype.write = function (chunk, ...rest) {
  if (armed && Buffer.isBuffer(chunk) && chunk.length >= 6 && chunk.readInt16BE(4) === 26) {
    armed = false;
    held = () => write.call(this, chunk, ...rest);
    console.log('commit');
    return true;
  }
  return write.call(this, chunk, ...rest);
};
const run = (fn, input) => new MockActivityEnvironment({}, { logger: new DefaultLogger('ERROR') }).run(fn, input);
(async () => {
  await producer.connect();
  const metrics = createMetrics(config.metrics.tenantLabelLimit);
  const lineageKey = await loadLineageKey(pool, config.lineageKey);
  const activities = createReplayActivities({ pool, producer, metrics, config, lineageKey, log });
  const warm = await run(activities.replayBatchPage, { ids: [a], source: 'batch', replayId: 'a39-warm' });
  console.log('ready ' + warm.published);
  createInterface({ input: process.stdin }).on('line', (line) => {
    if (line === 'go') {
      armed = true;
      run(activities.replayBatchPage, { ids: [b], source: 'batch', replayId: 'a39-page' }).then(
        (r) => console.log('sent ' + JSON.stringify(r)),
        (err) => console.log('failed ' + err.message),
      );
    } else if (line === 'release') {
      held();
      console.log('written');
    }
  });
})().catch((err) => { console.log('error ' + err.message); process.exit(1); });
`;

it("a dead worker's batch replay, its commit in a frozen broker, is not committed after the erasure's wait returned", async () => {
  const [a, b] = await seedJournal(h.pool, 2, { topics: [h.topics.leads], tenants: ['acme'], label: 'a39' });
  const keyOf = async (id: number) =>
    (await h.pool.query<{ k: string }>('SELECT kafka_key AS k FROM event_journal WHERE id = $1', [id])).rows[0].k;
  const [keyA, keyB] = [await keyOf(a), await keyOf(b)];

  child = spawn(process.execPath, ['-e', WORKER, String(a), String(b)], {
    cwd: path.resolve(__dirname, '../..'),
    env: {
      ...process.env,
      LOG_LEVEL: 'silent',
      DATABASE_URL: h.databaseUrl,
      KAFKA_TOPICS: `${h.topics.leads},${h.topics.jobs}`,
      KAFKA_GROUP_ID: h.config.kafka.groupId,
    },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const printed: string[] = [];
  createInterface({ input: child.stdout! }).on('line', (line) => printed.push(line));
  const until = async (prefix: string) => {
    for (let i = 0; i < 1200 && !printed.some((l) => l.startsWith(prefix)); i++)
      await new Promise((r) => setTimeout(r, 50));
    expect(printed.filter((l) => l.startsWith(prefix) || l.startsWith('error'))).toEqual([
      expect.stringMatching(new RegExp(`^${prefix}`)),
    ]);
  };
  await until('ready');
  child.stdin!.write('go\n');
  await until('commit'); // the page checked (B not erased), produced, and now committing
  frozen = kafkaBrokerPid(h.config.kafka.brokers);
  process.kill(frozen, 'SIGSTOP');
  const frozenAt = Date.now();
  child.stdin!.write('release\n');
  await until('written');
  await new Promise((r) => setTimeout(r, 500));
  child.kill('SIGKILL');
  const killedAt = Date.now();

  // The erasure: B deleted and recorded, then its wait for the replay sends, fencing (as activities/erasure.ts does)
  // the producers of pages whose holders went.
  await h.pool.query('DELETE FROM event_journal WHERE id = $1', [b]);
  await h.pool.query(`INSERT INTO erased_events (event_id, erasure_id) VALUES ($1, 'a39-erasure')`, [b]);
  const fencer = createProducer(h.kafka, createLogger('silent'));
  let erasureDoneAt: number | undefined;
  const waited = awaitReplaySends(h.pool, { timeoutMs: 250_000, fence: (scope) => fencer.fenceOthers(scope) }).then(
    () => (erasureDoneAt = Date.now()),
  );
  await new Promise((r) => setTimeout(r, Math.max(0, killedAt + BARRIER_LEASE_MS + 5000 - Date.now())));
  const returnedWhileFrozen = erasureDoneAt !== undefined;
  process.kill(frozen, 'SIGCONT');
  frozen = undefined;
  const thawedAt = Date.now();
  await waited;

  // What a read_committed consumer sees on the topic (the replays of A and, if committed, B).
  const committed: string[] = [];
  const consumer = h.kafka.consumer({ groupId: `a39-read-${Date.now()}` });
  await consumer.connect();
  await consumer.subscribe({ topic: h.topics.leads, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message: m }) => {
      committed.push(m.key?.toString() ?? '');
    },
  });
  for (let i = 0; i < 100 && committed.length < 2; i++) await new Promise((r) => setTimeout(r, 100));
  await new Promise((r) => setTimeout(r, 3000));
  await consumer.disconnect();
  console.log(
    JSON.stringify({
      printed,
      keyA,
      keyB,
      returnedWhileFrozen,
      erasureWaitedAfterKillMs: erasureDoneAt! - killedAt,
      erasureDoneBeforeThawMs: thawedAt - erasureDoneAt!,
      frozenMs: thawedAt - frozenAt,
      committed,
    }),
  );
  // The broker did not run from before B's commit was written until thawedAt: if B is committed, it was committed
  // after thawedAt, so an erasure whose wait returned before thawedAt let it become visible afterwards. (A fixed wait
  // may return after the thaw, B committed before it: allowed.)
  // The wait must not return while the broker still holds the page's commit unfenced (the criterion of attack38's
  // killed-worker test: what the broker holds then decides alone whether B becomes visible after the erasure).
  expect(committed).toContain(keyA);
  const visibleAfterErasure = committed.includes(keyB) && erasureDoneAt! < thawedAt ? [keyB] : [];
  expect({ returnedWhileFrozen, visibleAfterErasure }).toEqual({ returnedWhileFrozen: false, visibleAfterErasure: [] });
});

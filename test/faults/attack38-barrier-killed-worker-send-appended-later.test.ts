import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { awaitReplaySends } from '../../repository/erasure';
import { createPool, type Pool } from '../../shared/db';
import { BARRIER_LEASE_MS } from '../../shared/barrier';
import { createKafka, createProducer } from '../../shared/kafka';
import { createLogger } from '../../shared/logger';
import { createTestDatabase } from '../support/database';
import { baseConfig, uniqueSuffix } from '../support/env';
import { kafkaBrokerPid } from '../support/stack';

/**
 * attack38 against 922b557 (the replay-send/erasure barrier: a holder's row expires a lease after its worker died,
 * shared/barrier.ts BARRIER_LEASE_MS; docs/lifecycle.md "an erasure waits at most that long for a SIGKILLed worker's
 * page").
 *
 * Invariant (docs/lifecycle.md, "Erasure barrier"; barrier invariant 1): once an erasure's wait for the replay sends
 * has returned (and so once the erasure has completed), no replay page that checked before its ids were recorded
 * puts an erased row into Kafka.
 *
 * Attack: a worker process (a child running dist/: withErasuresChecked, the project's createKafka/createProducer and
 * publishMessages) checks a page (its row not erased yet) and sends it while the broker is frozen (SIGSTOP); the
 * produce request is written into the broker's socket. The worker is then SIGKILLed (OOM killer, node failure). The
 * erasure records the row's id and waits (awaitReplaySends): the dead worker's row expires a lease (120 s) after its
 * last renewal and the wait returns. The broker is thawed 1.5 s after: it reads the dead worker's produce request
 * from its socket and appends it. The topic uses LogAppendTime.
 *
 * Observed: the worker printed "sending" and was killed; the erasure's wait returned 120075 ms after the kill (the
 * dead worker's row expired); the erased row (id 2) was appended to the topic 1508 ms after the wait returned, i.e. at
 * the thaw. The lease bounds how long a dead worker's page is waited for, not how long its produce request can still
 * be appended: a request written into a broker that is not running outlives the process that wrote it.
 * Suspected cause: shared/barrier.ts (the waiter takes an expired row for a holder whose send has ended,
 * awaitBarrierHolders' `expires_at > now()`), docs/lifecycle.md "an erasure waits at most that long for a SIGKILLed
 * worker's page": nothing on the Kafka side fences a dead producer's requests still in flight (same root as
 * attack38-barrier-send-timed-out-appended-later: the end of a send as the client sees it is not the end of its
 * appends).
 *
 * Fixed: each holder row records its producer's fence scope (shared/kafka.ts fenceScope: the prefix of its
 * transactional ids); a waiter that finds such a row expired fences the scope (every id's epoch bumped, its open
 * transaction aborted once each partition has its marker) before it counts the holder gone, and only then deletes the
 * row. While the broker is frozen the fence cannot finish, so the wait does not return; the broker is now thawed once
 * the row has expired (a wait that returns while the broker is frozen is the failure).
 */
jest.setTimeout(300_000);

const DIST = path.resolve(__dirname, '../../dist');
const config = baseConfig();
const kafka = createKafka(config.kafka.brokers, 'a38-killed-reader', createLogger('silent'));
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let pool: Pool;
let child: ChildProcess | undefined;
let frozen: number | undefined;

beforeAll(async () => {
  db = await createTestDatabase(config.databaseUrl, 'a38_killed_worker');
  pool = createPool(db.databaseUrl, 6, createLogger('silent'));
});
afterAll(async () => {
  if (frozen) process.kill(frozen, 'SIGCONT');
  child?.kill('SIGKILL');
  await pool?.end();
  await db?.drop();
});

/** The worker's page: warm the producer, then on "go" check id 2 and send it, printing "sending" once checked. */
const WORKER = `
const { withErasuresChecked } = require(${JSON.stringify(`${DIST}/repository/erasure`)});
const { publishMessages } = require(${JSON.stringify(`${DIST}/activities/publish`)});
const { createKafka, createProducer } = require(${JSON.stringify(`${DIST}/shared/kafka`)});
const { createPool } = require(${JSON.stringify(`${DIST}/shared/db`)});
const { createLogger } = require(${JSON.stringify(`${DIST}/shared/logger`)});
const [databaseUrl, broker, topic] = process.argv.slice(1);
const log = createLogger('silent');
const pool = createPool(databaseUrl, 6, log);
const producer = createProducer(createKafka([broker], 'a38-killed-worker', log), log);
const message = (id) => ({ topic, key: Buffer.from('subject'), value: JSON.stringify({ id }), headers: {} });
(async () => {
  await producer.connect();
  await publishMessages(producer, [message(1)]);
  console.log('ready');
  process.stdin.once('data', () => {
    withErasuresChecked(pool, [2], producer, async (erased, keep) => {
      console.log(erased.has(2) ? 'left out' : 'sending');
      if (!erased.has(2)) await publishMessages(producer, [message(2)], { track: keep });
    }).then(() => console.log('sent'), (err) => console.log('failed ' + err.message));
  });
})().catch((err) => { console.log('error ' + err.message); process.exit(1); });
`;

it("a dead worker's page, sent into a frozen broker, is not appended after the erasure's wait returned", async () => {
  const topic = `a38-killed-${uniqueSuffix()}`;
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({
    topics: [{ topic, numPartitions: 1, configEntries: [{ name: 'message.timestamp.type', value: 'LogAppendTime' }] }],
    waitForLeaders: true,
  });
  await admin.disconnect();

  child = spawn(process.execPath, ['-e', WORKER, db.databaseUrl, config.kafka.brokers[0], topic], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout! });
  const printed: string[] = [];
  lines.on('line', (line) => printed.push(line));
  const until = async (line: string) => {
    for (let i = 0; i < 600 && !printed.includes(line); i++) await new Promise((r) => setTimeout(r, 50));
    expect(printed).toContain(line);
  };
  await until('ready');
  frozen = kafkaBrokerPid(config.kafka.brokers);
  process.kill(frozen, 'SIGSTOP');
  const frozenAt = Date.now();
  child.stdin!.write('go\n');
  await until('sending');
  await new Promise((r) => setTimeout(r, 500)); // the produce request written into the broker's socket
  child.kill('SIGKILL');
  const killedAt = Date.now();

  // The erasure: its ids recorded, then its wait for the replay sends, fencing (as activities/erasure.ts does) the
  // producers of pages whose holders went.
  await pool.query(`INSERT INTO erased_events (event_id, erasure_id) VALUES (2, 'a38-erasure')`);
  const fencer = createProducer(kafka, createLogger('silent'));
  let erasureDoneAt: number | undefined;
  const waited = awaitReplaySends(pool, { timeoutMs: 250_000, fence: (scope) => fencer.fenceOthers(scope) }).then(
    () => (erasureDoneAt = Date.now()),
  );
  // The broker runs again once the dead worker's row has expired (the waiter is fencing its producers by then).
  await new Promise((r) => setTimeout(r, Math.max(0, killedAt + BARRIER_LEASE_MS + 5000 - Date.now())));
  const returnedWhileFrozen = erasureDoneAt !== undefined;
  process.kill(frozen, 'SIGCONT');
  frozen = undefined;
  const thawedAt = Date.now();
  await waited;

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
    for (let i = 0; i < 50 && !seen.some((m) => m.id === 2); i++) await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => setTimeout(r, 2000));
    await consumer.disconnect();
    return seen;
  };
  const seen = await read(true);
  const committed = await read(false);
  console.log(
    JSON.stringify({
      printed,
      returnedWhileFrozen,
      erasureWaitedAfterKillMs: erasureDoneAt! - killedAt,
      msAfterThaw: erasureDoneAt! - thawedAt,
      frozenMs: thawedAt - frozenAt,
      seen: seen.map((m) => ({ id: m.id, msAfterErasureWait: m.appendedAt - erasureDoneAt! })),
      committed: committed.map((m) => m.id),
    }),
  );
  expect(returnedWhileFrozen).toBe(false);
  const after = seen.filter((m) => m.id === 2 && m.appendedAt > erasureDoneAt!);
  expect(after.map((m) => ({ id: m.id, msAfterErasureWait: m.appendedAt - erasureDoneAt! }))).toEqual([]);
  // The dead worker's transaction was aborted by the fence: no consumer of committed records sees its row.
  expect(committed.map((m) => m.id)).toEqual([1]);
});

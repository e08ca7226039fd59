import { createPool, type Pool } from '../../shared/db';
import { createLogger } from '../../shared/logger';
import { awaitReplaySends, withErasuresChecked } from '../../repository/erasure';
import { createTestDatabase } from '../support/database';
import { baseConfig } from '../support/env';

/**
 * attack34 against 98fa3cd (and the barrier of 5811654 it bounds: repository/erasure.ts withErasuresChecked /
 * awaitReplaySends, shared/db.ts holdBarrier / awaitBarrierHolders).
 *
 * Invariant: an erasure never completes while a replay page that checked before its ids were recorded is still
 * sending.
 *
 * Attack: the barrier is only a Postgres advisory lock held by the replay's session. A replay page checks its ids and
 * starts its send (a frozen broker holds it; kafkajs finishes it later whatever the activity does); then the holder's
 * session ends under it: Postgres restarted or failed over, the connection reset, or the server's TCP keepalive
 * ending a session whose client went silent (here: pg_terminate_backend of the holder's backend). The lock goes with
 * the session, but the send goes on and the holder does not notice (its `broken` is only looked at when it releases
 * the client). The erasure's barrier (awaitReplaySends) then takes the lock at once and returns: the erasure
 * completes, and the page's send, which may carry its erased rows, is still in flight.
 * Observed on main: awaitReplaySends returns (6 ms after the holder's session ended) while the page's send is pending ('returned while sending').
 * Fixed: the barrier is rows (barrier_holders, sql/020), not a lock: each holder commits one before its check, renews
 * its lease while it holds and deletes it once the kept send has settled (on another connection when its session
 * ended); the barrier waits for the rows unexpired at its call (shared/barrier.ts). Here it waits until its bound,
 * naming the row.
 */
jest.setTimeout(30_000);

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let pool: Pool;

beforeAll(async () => {
  db = await createTestDatabase(baseConfig().databaseUrl, 'a34_barrier_lost');
  pool = createPool(db.databaseUrl, 4, createLogger('silent'));
});
afterAll(async () => {
  await pool?.end();
  await db?.drop();
});

it("an erasure's barrier does not pass while a page's send is in flight, even when the holder's session ended", async () => {
  let sent!: () => void;
  const sending = new Promise<void>((resolve) => (sent = resolve));
  let inFlight = false;
  const page = withErasuresChecked(pool, [1, 2, 3], null, async (erased, keep) => {
    // The check found nothing erased; the send starts and outlives the activity (kafkajs, frozen broker).
    inFlight = true;
    keep(sending.then(() => (inFlight = false)));
    return erased.size;
  });
  // withErasuresChecked holds the lock until the kept send settles: the page is not awaited here.
  const pageEnded = page.then(
    () => 'ended',
    (err: Error) => `failed: ${err.message}`,
  );
  for (let i = 0; i < 100 && !inFlight; i++) await new Promise((resolve) => setTimeout(resolve, 20));
  expect(inFlight).toBe(true);

  // The holder's session ends (Postgres restart / failover / connection reset), its send goes on.
  const { rows } = await pool.query<{ pid: number }>('SELECT session_pid AS pid FROM barrier_holders');
  expect(rows).toHaveLength(1);
  await pool.query('SELECT pg_terminate_backend($1)', [rows[0].pid]);
  await new Promise((resolve) => setTimeout(resolve, 200));

  // The erasure's last step: wait for the pages that checked before its ids were recorded.
  const started = Date.now();
  const verdict = await Promise.race([
    awaitReplaySends(pool, { timeoutMs: 3000 }).then(
      () => (inFlight ? `returned while sending (${Date.now() - started} ms)` : 'returned after the send'),
      (err: Error) => `rejected: ${err.message}`,
    ),
    new Promise<string>((resolve) => setTimeout(() => resolve('still waiting'), 6000)),
  ]);
  sent();
  await pageEnded;
  expect(verdict).not.toMatch(/returned while sending/);
  expect(verdict).toMatch(
    /^rejected: .*did not let it go within 3000 ms \(1 still held: barrier_holders [0-9a-f-]{36}\)/,
  );
});

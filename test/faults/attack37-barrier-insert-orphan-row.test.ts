import { awaitBarrierHolders, holdBarrier } from '../../shared/barrier';
import { createPool, type Pool } from '../../shared/db';
import { createLogger } from '../../shared/logger';
import { createTestDatabase } from '../support/database';
import { baseConfig } from '../support/env';
import { connectTableLock, untilWaitingOn } from '../support/table-lock';

/**
 * attack37 against 431f234 (shared/barrier.ts holdBarrier: the INSERT bounded by BARRIER_SILENCE_MS; awaitBarrierHolders),
 * used by repository/erasure.ts withErasuresChecked / awaitReplaySends.
 *
 * Invariant: the waiter waits for holders that hold (their work, kept sends included), not for rows nobody holds: a
 * holder that failed before its work ran leaves no row behind for a waiter (an erasure) to wait a whole lease for, and
 * rows of finished holders do not linger.
 *
 * Attack: barrier_holders is locked against writers for more than 5 s (a migration, VACUUM FULL / ALTER of the table,
 * or any long lock; here SHARE ROW EXCLUSIVE from another session, as test/support/table-lock.ts does). A replay page's
 * holdBarrier INSERT waits on the server; after BARRIER_SILENCE_MS the holder gives up (holdBarrier rejects, fn never
 * runs, nothing is sent) and destroys its client; `holder` stays undefined, so end() neither deletes nor drops a row.
 * The backend, blocked on the lock, does not notice its client left: once the lock goes, its INSERT commits a row
 * with expires_at = now() + lease that no one renews and no one deletes. Every erasure's awaitReplaySends called in the
 * next BARRIER_LEASE_MS (2 min) waits for that row (the erasure's last step stalls a lease for a page that never
 * sent); the row itself stays for an hour (until a waiter's clean-up). Here the waiter's bound is 8 s.
 *
 * Observed: holdBarrier rejects ("Postgres did not answer in 5000 ms"), fn not run; after the lock is released one
 * barrier_holders row (session_pid of the destroyed session) stays unexpired, and awaitBarrierHolders rejects at its
 * 8 s bound naming it ("1 still held") although no holder holds.
 * Fixed: a holder's id is its own uuid, chosen before the insert; an insert without an answer has its row deleted by
 * that id on the pool's connections, tried again (a delete that finds none too) for a lease.
 */
jest.setTimeout(60_000);

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let pool: Pool;

beforeAll(async () => {
  db = await createTestDatabase(baseConfig().databaseUrl, 'a37_insert_orphan');
  pool = createPool(db.databaseUrl, 4, createLogger('silent'));
});
afterAll(async () => {
  await pool?.end();
  await db?.drop();
});

it('a holder whose INSERT timed out leaves no row for an erasure to wait a lease for', async () => {
  const name = 'a37-orphan';
  const lock = await connectTableLock(db.databaseUrl, 'barrier_holders');
  await lock.take();
  let ran = false;
  const held = holdBarrier(pool, name, async () => {
    ran = true;
  }).then(
    () => 'held',
    (err: Error) => `rejected: ${err.message}`,
  );
  await untilWaitingOn(pool, 'barrier_holders', 1);
  const outcome = await held; // after BARRIER_SILENCE_MS
  await lock.release();
  await lock.end();
  await new Promise((resolve) => setTimeout(resolve, 500));
  const { rows } = await pool.query<{ n: string }>(
    'SELECT count(*) AS n FROM barrier_holders WHERE name = $1 AND expires_at > now()',
    [name],
  );

  const verdict = await awaitBarrierHolders(pool, name, { timeoutMs: 8000 }).then(
    () => 'returned',
    (err: Error) => `rejected: ${err.message}`,
  );
  expect({
    ran,
    outcome: outcome.startsWith('rejected') ? 'rejected' : outcome,
    unexpiredRows: Number(rows[0].n),
    verdict,
  }).toEqual({
    ran: false,
    outcome: 'rejected',
    unexpiredRows: 0,
    verdict: 'returned',
  });
});

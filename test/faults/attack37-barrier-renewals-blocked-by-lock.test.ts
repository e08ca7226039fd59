import { awaitBarrierHolders, holdBarrier } from '../../shared/barrier';
import { createPool, type Pool } from '../../shared/db';
import { createLogger } from '../../shared/logger';
import { createTestDatabase } from '../support/database';
import { baseConfig } from '../support/env';
import { connectTableLock } from '../support/table-lock';

/**
 * attack37 against 431f234 (shared/barrier.ts holdBarrier / renewHolder; awaitBarrierHolders), used by
 * repository/erasure.ts withErasuresChecked / awaitReplaySends.
 *
 * Invariant (1): once awaitBarrierHolders returns, no holder that held the barrier at its call is still in its work
 * (kept sends unsettled), unless that holder's process could reach Postgres on no connection for a whole lease.
 *
 * Attack: the holder's process reaches Postgres all along (its own session lives, new connections are made, every
 * SELECT is answered), but barrier_holders is locked against writers (SHARE ROW EXCLUSIVE from another session: a
 * migration / maintenance statement on the table) for longer than a lease. Every renewal UPDATE, on the holder's own
 * connection and on the pool's, waits on the lock; the waiter, already past its clean-up DELETE, only SELECTs, which the
 * lock does not block, and the server's now() passes the row's expires_at: the waiter returns while the holder's send
 * is still on. The renewals then go in, too late. The lease is shortened to 2 s (holdBarrier's own option, as
 * barrier-holders.test.ts and attack36 do); in production the same takes a lock held for BARRIER_LEASE_MS (2 min).
 * Control: the same without the lock holds ('waiting').
 *
 * Observed: with the lock, 'returned while sending' about 2.5 s after the lock was taken (the row expired at the server while
 * the holder's renewals waited on the lock); without it, 'waiting' (5 s).
 * Fixed: a waiter's look at the rows takes the lock writing them takes (ROW EXCLUSIVE, in its own transaction): while
 * the table is locked against the renewals, it is not looked at either.
 * Stop-29 CI: the look's lock_timeout was the silence bound (5 s) and a timed-out look rejected the wait ('rejected:
 * canceling statement due to lock timeout' once the lock outlived it on a loaded machine). A look now gives up its lock
 * wait after 2 s and is tried again until the wait's own timeout: this test's 5 s lock outlasts two such looks.
 */
jest.setTimeout(60_000);

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let pool: Pool;
let waiterPool: Pool;

beforeAll(async () => {
  db = await createTestDatabase(baseConfig().databaseUrl, 'a37_renewals_locked');
  pool = createPool(db.databaseUrl, 4, createLogger('silent'));
  waiterPool = createPool(db.databaseUrl, 4, createLogger('silent'));
});
afterAll(async () => {
  await pool?.end();
  await waiterPool?.end();
  await db?.drop();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function scenario(name: string, locked: boolean): Promise<string> {
  let end!: () => void;
  const ending = new Promise<void>((resolve) => (end = resolve));
  let sending = false;
  const held = holdBarrier(
    pool,
    name,
    async (_client, keep) => {
      sending = true;
      keep(ending.then(() => (sending = false)));
    },
    { leaseMs: 2000 },
  ).catch(() => undefined);
  for (let i = 0; i < 200 && !sending; i++) await sleep(10);
  expect(sending).toBe(true);
  // The erasure's ids are committed; its barrier (another worker's pool) starts waiting.
  let verdict = 'waiting';
  void awaitBarrierHolders(waiterPool, name, { timeoutMs: 30_000 }).then(
    () => (verdict = sending ? 'returned while sending' : 'returned'),
    (err: Error) => (verdict = `rejected: ${err.message}`),
  );
  await sleep(300);
  const lock = await connectTableLock(db.databaseUrl, 'barrier_holders');
  if (locked) await lock.take();
  // The lock is held 5 s (2.5 leases); the renewals waiting on it answer only once it goes.
  for (let i = 0; i < 50 && verdict === 'waiting'; i++) await sleep(100);
  const seen = verdict;
  if (locked) await lock.release();
  await lock.end();
  end();
  await held;
  return seen;
}

it("a holder's lease does not run out while Postgres answers it, even with its renewals waiting on a lock", async () => {
  const unlocked = await scenario('a37-unlocked', false);
  const locked = await scenario('a37-locked', true);
  expect({ unlocked, locked }).toEqual({ unlocked: 'waiting', locked: 'waiting' });
});

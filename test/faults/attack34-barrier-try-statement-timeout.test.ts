import { awaitBarrierHolders, holdBarrier } from '../../shared/barrier';
import { createPool, type Pool } from '../../shared/db';
import { createLogger } from '../../shared/logger';
import { createTestDatabase } from '../support/database';
import { baseConfig } from '../support/env';

/**
 * attack34 against 98fa3cd (shared/db.ts awaitBarrierHolders / barrierTry; the try's bound of 5811654).
 *
 * Invariant: an erasure is never stuck for ever, and its wait for the replay sends is what the docs say: "tries for
 * 30 s at a time, each keeping its place in the lock's queue ... fails the pass after 10 minutes".
 *
 * Attack: the try runs on an ordinary pool connection, whose statement_timeout (DATABASE_STATEMENT_TIMEOUT, 30 s by
 * default) is the same as the try's lock_timeout (BARRIER_TRY_MS, 30 s) and starts earlier (at the statement, not at
 * the lock wait). A replay page holding the barrier a little more than 30 s (a slow broker) makes the try fail with
 * 57014 "canceling statement due to statement timeout", which barrierTry does not take for a try that ran out: the
 * whole wait (and the erasure's pass) fails after 30 s instead of trying again, leaving the lock's queue (the holders
 * queued behind it get in: overlapping sends can starve it, the very thing the 30 s tries were for).
 * Observed on main: 'rejected after ~30 s: canceling statement due to statement timeout' while the holder was still
 * there and the wait's bound (60 s) far off.
 * Fixed: each try sets its own statement_timeout (its lock_timeout + 5 s), so its lock_timeout always comes first.
 * Since the barrier became rows (shared/barrier.ts, no lock tries), the same wait longer than 30 s is a poll of them.
 */
jest.setTimeout(80_000);

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let pool: Pool;

beforeAll(async () => {
  db = await createTestDatabase(baseConfig().databaseUrl, 'a34_barrier_stmt');
  // The worker's pool as createPool makes it by default (statement_timeout 30 s).
  pool = createPool(db.databaseUrl, 4, createLogger('silent'));
});
afterAll(async () => {
  await pool?.end();
  await db?.drop();
});

it('a barrier wait outlasting one try tries again instead of failing on the connection statement_timeout', async () => {
  let finish!: () => void;
  const staying = new Promise<void>((resolve) => (finish = resolve));
  const holder = holdBarrier(pool, 'a34-stmt', () => staying);
  await new Promise((resolve) => setTimeout(resolve, 200));
  const started = Date.now();
  let verdict: string | undefined;
  const barrier = awaitBarrierHolders(pool, 'a34-stmt', { timeoutMs: 60_000 }).then(
    () => (verdict = `returned after ${Math.round((Date.now() - started) / 1000)} s`),
    (err: Error) => (verdict = `rejected after ${Math.round((Date.now() - started) / 1000)} s: ${err.message}`),
  );
  // The holder (a page's send on a slow broker) lets go 34 s in.
  await new Promise((resolve) => setTimeout(resolve, 34_000));
  const whileHeld = verdict;
  finish();
  await holder;
  await barrier;
  expect({ whileHeld, verdict }).toEqual({
    whileHeld: undefined,
    verdict: expect.stringMatching(/^returned after \d+ s/),
  });
});

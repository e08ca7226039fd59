import { awaitBarrierHolders, holdBarrier } from '../../shared/barrier';
import { createPool, type Pool } from '../../shared/db';
import { createLogger } from '../../shared/logger';
import { createTestDatabase } from '../support/database';
import { baseConfig } from '../support/env';

/**
 * Attacks 40544dc (shared/db.ts awaitBarrierHolders / barrierTry; BARRIER_TRY_MS), used by repository/erasure.ts
 * awaitReplaySends.
 *
 * Invariant (awaitBarrierHolders' doc): "While it waits, later shared requests queue behind it ..., so a stream of
 * holders cannot starve it": the barrier waits for the holders there at its call, never for later ones.
 *
 * Attack: each try keeps its place in the lock's queue only for BARRIER_TRY_MS (30 s, lock_timeout). Replay sends
 * that last longer than that (a kafkajs produce waits up to its 30 s requestTimeout, then retries: a broker slow to
 * acknowledge) and overlap: H1 holds when the barrier is called and ends at ~32 s. H2 comes at 10 s, queues behind
 * try 1; when try 1 gives up at ~31 s (H1 still on), H2 is granted and holds 32 s; try 2 then queues behind H2, gives
 * up at ~61 s, H3 (come at 40 s) is granted, and so on. Every holder there at the barrier's call has ended by ~32 s,
 * yet the barrier never gets the lock: it fails once timeoutMs has passed (an erasure then fails its activity and, with
 * such a stream of pages, every retry of it).
 *
 * Observed: the barrier (timeoutMs 60 s) rejects "did not let it go" at ~61 s, although H1, the only holder at its
 * call, ended at ~32 s.
 * Fixed: the barrier takes no lock any more (shared/barrier.ts): it waits for the barrier_holders rows unexpired at
 * its call, and later holders are not among them.
 */
jest.setTimeout(120_000);

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let replayPool: Pool;
let erasurePool: Pool;

beforeAll(async () => {
  db = await createTestDatabase(baseConfig().databaseUrl, 'a36_barrier_starve');
  replayPool = createPool(db.databaseUrl, 8, createLogger('silent'), 120_000);
  erasurePool = createPool(db.databaseUrl, 4, createLogger('silent'));
});
afterAll(async () => {
  await replayPool?.end().catch(() => undefined);
  await erasurePool?.end().catch(() => undefined);
  await db?.drop();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const NAME = 'a36-starve';
const SEND_MS = 32_000;

it('a barrier is not starved by later holders whose sends outlast one try', async () => {
  const t0 = Date.now();
  const ends: number[] = [];
  const holder = () =>
    holdBarrier(replayPool, NAME, async (_client, keep) => {
      keep(sleep(SEND_MS).then(() => ends.push(Date.now() - t0)));
    });
  const holders = [holder()];
  await sleep(1000);
  let verdict = 'waiting';
  let at = 0;
  const barrier = awaitBarrierHolders(erasurePool, NAME, { timeoutMs: 60_000 }).then(
    () => ((verdict = 'returned'), (at = Date.now() - t0)),
    (err: Error) => ((verdict = `rejected: ${err.message}`), (at = Date.now() - t0)),
  );
  // Later pages, each come while the barrier's current try waits.
  await sleep(9000);
  holders.push(holder()); // ~10 s: granted when try 1 gives up
  await sleep(30_000);
  holders.push(holder()); // ~40 s: granted when try 2 gives up
  await barrier;
  const firstEnded = ends[0];
  await Promise.allSettled(holders);
  // The only holder there at the call ended at ~32 s: the barrier returns then, whatever came later.
  expect({ verdict, returnedBy40s: at < 40_000, firstEnded: firstEnded < 35_000 }).toEqual({
    verdict: 'returned',
    returnedBy40s: true,
    firstEnded: true,
  });
});

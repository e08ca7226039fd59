import { barrierWorld } from '../support/barrier-world';

/**
 * Attacks 40544dc (shared/db.ts holdBarrier / renewHolder / sharedHolderSlot; awaitBarrierHolders), used by
 * repository/erasure.ts withErasuresChecked / awaitReplaySends.
 *
 * Invariant: once awaitBarrierHolders (an erasure's awaitReplaySends) returns, no holder that took the barrier before
 * the call is still sending (its kept promises unsettled), unless that holder's process has been unable to renew its
 * row for a whole lease. Holders take at most half the pool, so the rest stays for everything else (renewals).
 *
 * Attack: a worker with DATABASE_POOL_SIZE=1 (config allows 1..200). sharedHolderSlot gives max(1, floor(1/2)) = 1
 * slot: the holder takes the pool's only connection. Its session is ended by the server (Postgres restart/failover,
 * connection reset) while its kept send goes on. The dead client is not given back until the send settles (end()
 * awaits kept first), so every renewal (renewHolder -> onBoundedClient -> pool.connect) waits for a connection that
 * never comes and times out: the row is never renewed although Postgres answers all along and the process is healthy.
 * Once the lease passes, the barrier (an erasure on another worker, its own pool) returns while the send is still on.
 * The lease is shortened to 4 s here (holdBarrier's own option, as test/integration/barrier-holders.test.ts does);
 * in production the same happens after BARRIER_LEASE_MS (2 min) of a send that outlives its session.
 * Control: the same with a pool of 2 holds (the renewal has a connection), so the lease is lost only because the
 * holder starved its own renewals.
 *
 * Observed: with a pool of 1 the barrier returns while the send is still on ('returned while sending'); with 2 it
 * waits ('waiting').
 * Fixed: a holder gives its connection back (destroyed) as soon as its session ends, not once its send has ended; the
 * renewals then have it.
 */
jest.setTimeout(60_000);

const world = barrierWorld('a35_barrier_pool1');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function scenario(poolSize: number, name: string): Promise<string> {
  const page = await world.sendingPage(world.replayPool(poolSize), name, 4000);
  // The holder's session ends (what a Postgres restart or failover does); its send goes on.
  await world.erasurePool().query('SELECT pg_terminate_backend($1)', [page.pid]);
  await sleep(200);
  // The erasure's barrier, on another worker (its own pool).
  const verdict = world.watchBarrier(name, page.sending);
  await sleep(12_000); // three leases
  const seen = verdict();
  page.end();
  await page.held;
  return seen;
}

it('a holder on a pool of one connection keeps its lease while its send is on (control: pool of two)', async () => {
  const two = await scenario(2, 'a35-pool-two');
  const one = await scenario(1, 'a35-pool-one');
  expect({ two, one }).toEqual({ two: 'waiting', one: 'waiting' });
});

import { barrierWorld } from '../support/barrier-world';

/**
 * Attacks 57e58b2 / 40544dc (shared/db.ts holdBarrier / renewHolder; awaitBarrierHolders), used by
 * repository/erasure.ts withErasuresChecked / awaitReplaySends.
 *
 * Invariant: once awaitBarrierHolders (an erasure's awaitReplaySends) returns, no holder that took the barrier before
 * the call is still sending (its kept promises unsettled), unless that holder's process could not reach Postgres for
 * a whole lease.
 *
 * Attack: a worker with DATABASE_POOL_SIZE=1 (the config allows it; attack35 used the same). 57e58b2 gives the
 * holder's connection back only once its session has ENDED. While the session lives, the holder still owns the pool's
 * only connection, so every renewal (renewHolder -> onBoundedClient -> pool.connect) times out waiting for it: a send
 * (kept promise) that outlives one lease with its session alive lets its row expire although Postgres answers all
 * along. An erasure then commits its ids and calls the barrier: it reads the unexpired rows first (none: the row has
 * expired), then waits for the exclusive lock, which the holder's live session still blocks. The holder's session then
 * ends (a Postgres failover / connection reset / idle_in_transaction_session_timeout): the lock goes, the barrier has
 * no row to wait for and returns while the send is still on. (The renewal, which gets a connection just after, revives
 * the row too late: the barrier read its rows before.) The lease is shortened to 2 s (holdBarrier's own option, as
 * barrier-holders.test.ts does); in production the same after BARRIER_LEASE_MS (2 min) of a long send (a broker slow
 * to acknowledge, kafkajs retries) followed by a session loss.
 * Control: the same with a pool of 2 holds (the renewal has a connection).
 *
 * Observed: pool of 1 -> 'returned while sending'; pool of 2 -> 'waiting'.
 * Fixed: the barrier is rows only (shared/barrier.ts): a holder renews its lease on its own connection while that
 * session lives (nothing else can starve it), on the pool's once it ended.
 */
jest.setTimeout(60_000);

const world = barrierWorld('a36_barrier_starved');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function scenario(poolSize: number, name: string): Promise<string> {
  const page = await world.sendingPage(world.replayPool(poolSize), name, 2000);
  // The send outlives a lease; the holder's session is alive all along (Postgres answers).
  await sleep(3500);
  // The erasure's ids are committed now (after the page's check); its barrier, on another worker (its own pool).
  const verdict = world.watchBarrier(name, page.sending);
  await sleep(500);
  // Now the holder's session ends (failover, connection reset); its send goes on.
  await world.erasurePool().query('SELECT pg_terminate_backend($1)', [page.pid]);
  await sleep(4000);
  const seen = verdict();
  page.end();
  await page.held;
  return seen;
}

it('a holder on a pool of one keeps its lease while its session lives and its send outlasts a lease (control: pool of two)', async () => {
  const two = await scenario(2, 'a36-starved-two');
  const one = await scenario(1, 'a36-starved-one');
  expect({ two, one }).toEqual({ two: 'waiting', one: 'waiting' });
});

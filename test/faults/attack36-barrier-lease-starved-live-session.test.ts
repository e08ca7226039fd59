import { awaitBarrierHolders, holdBarrier } from '../../shared/barrier';
import { createPool, type Pool } from '../../shared/db';
import { createLogger } from '../../shared/logger';
import { createTestDatabase } from '../support/database';
import { baseConfig } from '../support/env';

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

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let erasurePool: Pool;
const pools: Pool[] = [];

beforeAll(async () => {
  db = await createTestDatabase(baseConfig().databaseUrl, 'a36_barrier_starved');
  erasurePool = createPool(db.databaseUrl, 4, createLogger('silent'));
});
afterAll(async () => {
  for (const p of pools) await p.end().catch(() => undefined);
  await erasurePool?.end();
  await db?.drop();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function scenario(poolSize: number, name: string): Promise<string> {
  const replayPool = createPool(db.databaseUrl, poolSize, createLogger('silent'));
  pools.push(replayPool);
  let end!: () => void;
  const ending = new Promise<void>((resolve) => (end = resolve));
  let pid: number | undefined;
  let sending = false;
  const held = holdBarrier(
    replayPool,
    name,
    async (client, keep) => {
      pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
      sending = true;
      keep(ending.then(() => (sending = false)));
    },
    { leaseMs: 2000 },
  ).catch(() => undefined);
  for (let i = 0; i < 200 && !sending; i++) await sleep(10);
  expect(sending).toBe(true);
  // The send outlives a lease; the holder's session is alive all along (Postgres answers).
  await sleep(3500);
  // The erasure's ids are committed now (after the page's check); its barrier, on another worker (its own pool).
  let verdict = 'waiting';
  void awaitBarrierHolders(erasurePool, name, { timeoutMs: 30_000 }).then(
    () => (verdict = sending ? 'returned while sending' : 'returned'),
    (err: Error) => (verdict = `rejected: ${err.message}`),
  );
  await sleep(500);
  // Now the holder's session ends (failover, connection reset); its send goes on.
  await erasurePool.query('SELECT pg_terminate_backend($1)', [pid]);
  await sleep(4000);
  const seen = verdict;
  end();
  await held;
  return seen;
}

it('a holder on a pool of one keeps its lease while its session lives and its send outlasts a lease (control: pool of two)', async () => {
  const two = await scenario(2, 'a36-starved-two');
  const one = await scenario(1, 'a36-starved-one');
  expect({ two, one }).toEqual({ two: 'waiting', one: 'waiting' });
});

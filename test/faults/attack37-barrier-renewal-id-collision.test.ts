import { awaitBarrierHolders, holdBarrier } from '../../shared/barrier';
import { createPool, type Pool } from '../../shared/db';
import { createLogger } from '../../shared/logger';
import { createTestDatabase } from '../support/database';
import { baseConfig } from '../support/env';
import { connectTableLock } from '../support/table-lock';

/**
 * attack37 against 431f234 (shared/barrier.ts renewHolder: the module-wide `renewals` set, keyed by row id alone).
 *
 * Invariant (1): once awaitBarrierHolders returns, no holder that held the barrier at its call is still in its work,
 * unless that holder's process could reach Postgres on no connection for a whole lease. A holder's renewals depend
 * only on its own database.
 *
 * Attack: one process, two pools on two databases (barrier_holders ids are per database: both start at 1). Holder A
 * (database one, row 1) has a renewal that does not answer (barrier_holders of database one locked against writers:
 * the renewal waits 5 s on its own connection, then 5 s on the pool's). Holder B (database two, also row 1) is fine,
 * its database answers everything; but renewHolder skips any renewal of an id whose renewal is pending, whatever the
 * pool: B's renewals are all skipped while A's is pending, B's row expires, and an erasure's barrier on database two
 * returns while B's send is still on. The lease is 2 s here (holdBarrier's option); with BARRIER_LEASE_MS the same
 * happens when A's ticks come just before B's (A's pending renewals then cover each of B's ticks).
 * Control: B alone holds ('waiting').
 *
 * Observed: with A blocked, B's row expires 2 s after A's renewal started waiting (B's own database answering all
 * along) and the barrier on database two returns 'returned while sending'; without A, 'waiting'.
 * Fixed: a holder's id is its own uuid (d2df392), so no two rows share one and a pending renewal skips only its
 * own holder's next one (09f7f50 had keyed them per pool first); the same-id condition is no longer reachable, the
 * scenario stays.
 */
jest.setTimeout(60_000);

let one: Awaited<ReturnType<typeof createTestDatabase>>;
let two: Awaited<ReturnType<typeof createTestDatabase>>;
let poolOne: Pool;
let poolTwo: Pool;

beforeAll(async () => {
  one = await createTestDatabase(baseConfig().databaseUrl, 'a37_collide_one');
  two = await createTestDatabase(baseConfig().databaseUrl, 'a37_collide_two');
  poolOne = createPool(one.databaseUrl, 4, createLogger('silent'));
  poolTwo = createPool(two.databaseUrl, 4, createLogger('silent'));
});
afterAll(async () => {
  await poolOne?.end();
  await poolTwo?.end();
  await one?.drop();
  await two?.drop();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function hold(pool: Pool, name: string, leaseMs: number) {
  let end!: () => void;
  const ending = new Promise<void>((resolve) => (end = resolve));
  const state = { sending: false };
  const held = holdBarrier(
    pool,
    name,
    async (_client, keep) => {
      state.sending = true;
      keep(ending.then(() => (state.sending = false)));
    },
    { leaseMs },
  ).catch(() => undefined);
  return { state, end: async () => (end(), await held) };
}

async function scenario(withA: boolean): Promise<string> {
  await poolOne.query('TRUNCATE barrier_holders RESTART IDENTITY');
  await poolTwo.query('TRUNCATE barrier_holders RESTART IDENTITY');
  const lock = await connectTableLock(one.databaseUrl, 'barrier_holders');
  const a = withA ? hold(poolOne, 'a37-collide', 2000) : undefined;
  const b = hold(poolTwo, 'a37-collide', 2000);
  for (let i = 0; i < 200 && !(b.state.sending && (!a || a.state.sending)); i++) await sleep(10);
  expect(b.state.sending).toBe(true);
  if (a) await lock.take(); // database one only: A's renewals wait
  let verdict = 'waiting';
  void awaitBarrierHolders(poolTwo, 'a37-collide', { timeoutMs: 30_000 }).then(
    () => (verdict = b.state.sending ? 'returned while sending' : 'returned'),
    (err: Error) => (verdict = `rejected: ${err.message}`),
  );
  // A's renewal stays pending for about 10 s (5 s on its own connection, then 5 s on the pool's).
  for (let i = 0; i < 70 && verdict === 'waiting'; i++) await sleep(100);
  const seen = verdict;
  if (a) await lock.release();
  await lock.end();
  await b.end();
  await a?.end();
  return seen;
}

it("a holder's renewals do not depend on another database's holder with the same row id", async () => {
  const alone = await scenario(false);
  const collided = await scenario(true);
  expect({ alone, collided }).toEqual({ alone: 'waiting', collided: 'waiting' });
});

import pg from 'pg';
import { createPool, LOCK_WAIT_MS, lockNames, type Pool, type PoolClient } from '../../shared/db';
import { createLogger } from '../../shared/logger';
import { createTestDatabase } from '../support/database';
import { baseConfig } from '../support/env';

/**
 * attack42 (helper review of the partition-lock holder ending: shared/db.ts lockNames / waitForLock /
 * endStuckHolders).
 *
 * Invariant (docs/integrity.md, "Ingest"; lockNames' doc comment): every wait is bounded: a lock another transaction
 * holds is waited for up to LOCK_WAIT_MS (30 s), then the call fails and the batch is retried.
 *
 * Attack: the lock is held by a session that is not stuck on its client, so never ended (here busy in a statement,
 * pg_sleep(300); the same for a holder of another role, which the doc says is only waited for, or a live slow
 * batch). A second writer waits for it with lockNames (steps of STUCK_MS, 2 s). About 3 s into the wait the host's
 * wall clock steps back one hour (an NTP step, a VM restored or resumed with its clock behind, `date -s`), simulated
 * in the waiter's process by moving Date.now() back 3 600 000 ms; setTimeout and Postgres are untouched.
 *
 * Observed: 45 s into the wait the waiter is still waiting (without the step it fails at 30 s with "Another
 * transaction held advisory lock ... for 30000 ms"); it would wait until the wall clock has made up the hour, the
 * consumer's batch blocked all along. (A stuck holder is still ended, one step later: only the look straddling the
 * step is lost.)
 *
 * Suspected cause: waitForLock measures its bound with Date.now(), the wall clock, which can step back: `left`
 * (shared/db.ts:292) grows by the step. A monotonic clock (performance.now(), process.hrtime) does not step; the
 * look times of endStuckHolders (shared/db.ts:325-328, 349) have the same dependence.
 *
 * Fixed: every bound in lockNames is measured with performance.now() (monotonic); the look times too. The wait fails
 * at about 30.0 s, the wall clock's step notwithstanding.
 */
jest.setTimeout(120_000);

const STUCK_MS = 2000;
const STEP_BACK_MS = 3_600_000;
const NAME = 'journal:a42.clock/0';
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let direct: Pool;
const log = createLogger('silent');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

beforeAll(async () => {
  db = await createTestDatabase(baseConfig().databaseUrl, 'a42_clock');
  direct = createPool(db.databaseUrl, 2, log, 120_000);
});
afterAll(async () => {
  jest.restoreAllMocks();
  await direct?.end();
  await db?.drop();
});

async function session(name: string): Promise<{ client: pg.Client; pid: number }> {
  const client = new pg.Client({ connectionString: db.databaseUrl, application_name: name });
  client.on('error', () => undefined);
  await client.connect();
  const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  return { client, pid: rows[0].pid };
}

it('a wall clock stepping back mid-wait does not unbound the lock wait (LOCK_WAIT_MS)', async () => {
  const { client: holder, pid } = await session('a42-busy-holder');
  const { client: other } = await session('a42-waiter');
  let waiting: Promise<unknown> | undefined;
  try {
    await holder.query('BEGIN');
    await lockNames(holder as unknown as PoolClient, [NAME], STUCK_MS);
    holder.query('SELECT pg_sleep(300)').catch(() => undefined); // busy on the server, never on its client
    const since = Date.now();
    for (;;) {
      const { rows } = await direct.query<{ w: string | null }>(
        'SELECT wait_event AS w FROM pg_stat_activity WHERE pid = $1',
        [pid],
      );
      if (rows[0]?.w === 'PgSleep') break;
      if (Date.now() - since > 10_000) throw new Error('holder never in PgSleep');
      await sleep(20);
    }

    const realNow = Date.now.bind(Date);
    let offset = 0;
    jest.spyOn(Date, 'now').mockImplementation(() => realNow() - offset);
    const t0 = performance.now();
    waiting = (async () => {
      await other.query('BEGIN');
      await lockNames(other as unknown as PoolClient, [NAME], STUCK_MS);
      await other.query('COMMIT');
      return { gotLockAfterMs: Math.round(performance.now() - t0) };
    })().catch((err: Error) => ({ failedAfterMs: Math.round(performance.now() - t0), error: err.message }));
    await sleep(STUCK_MS + 1000); // the waiter has taken its first look
    offset = STEP_BACK_MS;
    const result = await Promise.race([waiting, sleep(LOCK_WAIT_MS + 15_000).then(() => 'still waiting' as const)]);
    console.log(JSON.stringify({ result }));
    expect(result).toEqual({ failedAfterMs: expect.any(Number), error: expect.stringMatching(/held advisory lock/) });
    expect((result as { failedAfterMs: number }).failedAfterMs).toBeLessThan(LOCK_WAIT_MS + 5000);
  } finally {
    await direct.query('SELECT pg_terminate_backend($1)', [pid]);
    jest.restoreAllMocks();
    await waiting;
    await holder.end().catch(() => undefined);
    await other.end().catch(() => undefined);
  }
});

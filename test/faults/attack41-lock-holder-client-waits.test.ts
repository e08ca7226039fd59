import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { createPool, lockNames, type Pool, type PoolClient } from '../../shared/db';
import { createLogger } from '../../shared/logger';
import { createTestDatabase, ownSession, viaProxy } from '../support/database';
import { baseConfig } from '../support/env';
import { freezableProxy } from '../support/freezable-proxy';

/**
 * attack41 (helper review of b055ee3: shared/db.ts lockNames / waitForLock / endStuckHolders).
 *
 * Invariant (docs/integrity.md, "Ingest"; lockNames' doc comment): a writer waiting for a partition's lock ends the
 * session holding it only when that session is stuck on its own client (a frozen process), wherever it waits on it,
 * and never a holder that is still making progress; the wait stays bounded by LOCK_WAIT_MS.
 *
 * Attack: the lock is held (lockNames, the same keys as a batch) by a session that, with steps of STUCK_MS:
 * 1. runs a query with a result of about 100 MB and has its connection frozen (a TCP proxy that stops passing bytes)
 *    after the first row: the server blocks writing the result (wait_event ClientWrite, state active);
 * 2. streams a COPY FROM STDIN a row every 200 ms for 3 x STUCK_MS (a live writer with a big batch on a slow host:
 *    between rows it waits in ClientRead, its state_change at the COPY's start).
 *
 * Observed before (b055ee3): 1. the waiter was still waiting 15 s later (it would fail at LOCK_WAIT_MS, 30 s): only
 * ClientRead was ended; 2. the live writer was terminated at the waiter's first step, 2 s in (its COPY failed, none of
 * its rows committed).
 * Fixed: ClientWrite counts too; a holder is ended only when seen in the same statement, waiting on its client, at two
 * looks at least a step apart, without progress in between (pg_stat_progress_copy's bytes and tuples unchanged). Each
 * look clears the statistics snapshot first: pg_stat_activity and the progress views are a snapshot kept for the
 * whole transaction (checked with psql), so without it the waiter's later looks saw its first look's progress (and
 * query_start) beside a live wait_event.
 *
 * Under lockNames' beat (attack42): the holder's lockNames starts its process's beat through the same proxy, so the
 * freeze freezes the beat too and the frozen reader is ended once its beat is older than a step, at the waiter's first
 * or second look (2.1 s and 4.0 s in two runs); the trickling COPY's process beats on and it is not ended.
 */
jest.setTimeout(120_000);

const STUCK_MS = 2000;
const NAME = 'journal:a41.leads/0';
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let direct: Pool;
const log = createLogger('silent');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

beforeAll(async () => {
  db = await createTestDatabase(baseConfig().databaseUrl, 'a41_lock_holder');
  direct = createPool(db.databaseUrl, 2, log, 60_000);
  await direct.query('CREATE TABLE a41_trickle (n int NOT NULL)');
});
afterAll(async () => {
  await direct?.end();
  await db?.drop();
});

/** A writer that begins a transaction and waits for NAME with lockNames: when it got it, or its error. */
function waiter() {
  const started = Date.now();
  const done = (async () => {
    const { client } = await ownSession(db.databaseUrl, 'a41-waiter');
    try {
      await client.query('BEGIN');
      await lockNames(client as unknown as PoolClient, [NAME], STUCK_MS);
      const gotAt = Date.now();
      await client.query('COMMIT');
      return { tookMs: gotAt - started, gotAt };
    } catch (err) {
      return { tookMs: Date.now() - started, error: (err as Error).message };
    } finally {
      await client.end().catch(() => undefined);
    }
  })();
  return done;
}

/** The waiter's result if it came within ms, else 'still waiting'. */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | 'still waiting'> {
  return Promise.race([promise, sleep(ms).then(() => 'still waiting' as const)]);
}

async function alive(pid: number): Promise<boolean> {
  const { rowCount } = await direct.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid]);
  return rowCount === 1;
}

async function untilWaiting(pid: number, waitEvent: string): Promise<void> {
  const since = Date.now();
  for (;;) {
    const { rows } = await direct.query<{ wait_event: string | null }>(
      'SELECT wait_event FROM pg_stat_activity WHERE pid = $1',
      [pid],
    );
    if (rows[0]?.wait_event === waitEvent) return;
    if (Date.now() - since > 10_000) throw new Error(`pid ${pid} not in ${waitEvent}: ${JSON.stringify(rows)}`);
    await sleep(20);
  }
}

it('a holder frozen while Postgres writes it a large result (ClientWrite) is ended within about two steps', async () => {
  const proxy = await freezableProxy('127.0.0.1', Number(new URL(db.databaseUrl).port));
  const url = viaProxy(db.databaseUrl, proxy.port);
  const { client: holder, pid } = await ownSession(url, 'a41-frozen-reader');
  let waiting: Promise<unknown> | undefined;
  try {
    await holder.query('BEGIN');
    await lockNames(holder as unknown as PoolClient, [NAME], STUCK_MS);
    const big = new pg.Query("SELECT repeat('x', 1000) AS filler FROM generate_series(1, 100000)");
    big.once('row', () => proxy.freeze());
    big.on('error', () => undefined);
    holder.query(big);
    await untilWaiting(pid, 'ClientWrite');

    const took = waiter();
    waiting = took;
    const result = await within(took, 15_000);
    console.log(JSON.stringify({ result }));
    expect({ result, holderAlive: await alive(pid) }).toEqual({
      result: { tookMs: expect.any(Number), gotAt: expect.any(Number) },
      holderAlive: false,
    });
    // About two steps: the first look sees it, the second (one step later) finds the same statement still there.
    expect((result as { tookMs: number }).tookMs).toBeLessThan(3 * STUCK_MS);
  } finally {
    await direct.query('SELECT pg_terminate_backend($1)', [pid]);
    await waiting;
    await proxy.close();
    await holder.end().catch(() => undefined);
  }
});

it('a live holder whose COPY streams a row every 200 ms for 3 steps is not ended; the waiter gets the lock after', async () => {
  const { client: holder, pid } = await ownSession(db.databaseUrl, 'a41-trickle');
  const rows = Math.round((3 * STUCK_MS) / 200);
  let waiting: Promise<unknown> | undefined;
  try {
    await holder.query('BEGIN');
    await lockNames(holder as unknown as PoolClient, [NAME], STUCK_MS);
    async function* trickle() {
      for (let n = 0; n < rows; n++) {
        yield `${n}\n`;
        await sleep(200);
      }
    }
    const copied = pipeline(Readable.from(trickle()), holder.query(copyFrom('COPY a41_trickle (n) FROM STDIN')));
    await untilWaiting(pid, 'ClientRead');
    const took = waiter();
    waiting = took;
    const holderEnded = await copied.then(
      async () => {
        const copyEndedAt = Date.now();
        await holder.query('COMMIT');
        return { committed: true, copyEndedAt };
      },
      (err: Error) => ({ committed: false, error: err.message }),
    );
    const result = await within(took, 35_000);
    const { rows: stored } = await direct.query<{ n: number }>('SELECT count(*)::int AS n FROM a41_trickle');
    console.log(JSON.stringify({ holderEnded, result }));
    expect({ holderEnded, result, stored: stored[0].n }).toEqual({
      holderEnded: { committed: true, copyEndedAt: expect.any(Number) },
      result: { tookMs: expect.any(Number), gotAt: expect.any(Number) },
      stored: rows,
    });
    // The waiter got the lock only once the COPY was done (a commit's answer comes a moment after the lock is free).
    const { copyEndedAt } = holderEnded as { copyEndedAt: number };
    expect((result as { gotAt: number }).gotAt).toBeGreaterThanOrEqual(copyEndedAt);
  } finally {
    await direct.query('SELECT pg_terminate_backend($1)', [pid]);
    await waiting;
    await holder.end().catch(() => undefined);
  }
});

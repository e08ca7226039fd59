import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { from as copyFrom } from 'pg-copy-streams';
import { BATCH_IDLE_TIMEOUT_MS } from '../../journal/redelivery';
import { createPool, LOCK_WAIT_MS, lockNames, type Pool, type PoolClient } from '../../shared/db';
import { createLogger } from '../../shared/logger';
import { createTestDatabase, ownSession, viaProxy } from '../support/database';
import { baseConfig } from '../support/env';
import { freezableProxy } from '../support/freezable-proxy';

/**
 * attack42 (helper review of the partition-lock holder ending: shared/db.ts lockNames / waitForLock /
 * endStuckHolders, at ingest's step BATCH_IDLE_TIMEOUT_MS and bound LOCK_WAIT_MS).
 *
 * Invariant (docs/integrity.md, "Ingest"; lockNames' doc comment): a frozen holder of a partition lock keeps the
 * partition's next owner out for about two steps after it froze (2 x BATCH_IDLE_TIMEOUT_MS, 20 s) plus its retry.
 *
 * Attack: the lock is held by a live writer whose COPY streams a row every 200 ms (moving, so rightly not ended) when
 * the next owner starts waiting for it (lockNames, the real step of 10 s). 12 s later, after the waiter's first look,
 * the writer's connection freezes (a TCP proxy that stops passing bytes: a process SIGSTOPped, a paused VM). The next
 * owner retries as ingest does (handleBatch: a failed batch is tried again after 250 ms) until it has the lock.
 *
 * Observed: the first wait fails at LOCK_WAIT_MS (30 s, "Another transaction held advisory lock ... for 30000 ms")
 * with the frozen holder alive; the retry starts from nothing and ends it two steps later: the next owner has the
 * lock about 38 s after the freeze, about four steps, not two.
 *
 * Suspected cause: a wait has three steps (LOCK_WAIT_MS / BATCH_IDLE_TIMEOUT_MS) but only two usable looks: the last
 * step is cut to the time left (shared/db.ts:296, min(stuckMs, left)), so its look is always a little less than a
 * step after the one before and is never compared (shared/db.ts:328, sent - at >= stuckMs); a holder first seen stuck
 * at the second look is never ended by this call. And the looks die with the call (waitForLock starts from an empty
 * map, shared/db.ts:290), so the retry needs two more steps.
 *
 * Fixed: a tagged holder is ended at one look once its process's beat is older than a step (the beat's age is the
 * evidence of time; nothing from an earlier look or call is needed), and the last, shortened step looks too (should it
 * end a holder, one more short try follows). The holder's beat runs through the same proxy and freezes with it. The
 * first wait gets the lock at its third look, about 30.0 s in, 18.0 s after the freeze.
 */
jest.setTimeout(180_000);

const NAME = 'journal:a42.late/0';
const FREEZE_AFTER_MS = 12_000;
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let direct: Pool;
const log = createLogger('silent');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

beforeAll(async () => {
  db = await createTestDatabase(baseConfig().databaseUrl, 'a42_late_freeze');
  direct = createPool(db.databaseUrl, 2, log, 60_000);
  await direct.query('CREATE TABLE a42_trickle (n int NOT NULL)');
});
afterAll(async () => {
  await direct?.end();
  await db?.drop();
});

it('a holder that freezes after the next owner first looked at it keeps the partition about two steps, not four', async () => {
  const proxy = await freezableProxy('127.0.0.1', Number(new URL(db.databaseUrl).port));
  const url = viaProxy(db.databaseUrl, proxy.port);
  const { client: holder, pid } = await ownSession(url, 'a42-trickle-then-frozen');
  const { client: next } = await ownSession(db.databaseUrl, 'a42-next-owner');
  let stop = false;
  let copied: Promise<unknown> | undefined;
  try {
    await holder.query(`BEGIN; SET LOCAL idle_in_transaction_session_timeout = ${BATCH_IDLE_TIMEOUT_MS}`);
    await lockNames(holder as unknown as PoolClient, [NAME], BATCH_IDLE_TIMEOUT_MS);
    async function* trickle() {
      for (let n = 0; !stop; n++) {
        yield `${n}\n`;
        await sleep(200);
      }
    }
    copied = pipeline(Readable.from(trickle()), holder.query(copyFrom('COPY a42_trickle (n) FROM STDIN'))).catch(
      () => undefined,
    );
    await sleep(500);

    const started = Date.now();
    let frozeAt = 0;
    const freezing = sleep(FREEZE_AFTER_MS).then(() => {
      frozeAt = Date.now();
      proxy.freeze();
    });
    const attempts: Array<{ atMs: number; error?: string; holderAlive?: boolean; gotLock?: boolean }> = [];
    let gotAt = 0;
    for (let attempt = 0; attempt < 3 && !gotAt; attempt++) {
      try {
        await next.query('BEGIN');
        await lockNames(next as unknown as PoolClient, [NAME], BATCH_IDLE_TIMEOUT_MS);
        gotAt = Date.now();
        await next.query('COMMIT');
        attempts.push({ atMs: gotAt - started, gotLock: true });
      } catch (err) {
        await next.query('ROLLBACK').catch(() => undefined);
        const { rowCount } = await direct.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid]);
        attempts.push({ atMs: Date.now() - started, error: (err as Error).message, holderAlive: rowCount === 1 });
        await sleep(250); // handleBatch's first retry delay
      }
    }
    await freezing;
    const lockedOutAfterFreezeMs = gotAt ? gotAt - frozeAt : undefined;
    console.log(JSON.stringify({ attempts, frozeAtMs: frozeAt - started, lockedOutAfterFreezeMs, LOCK_WAIT_MS }));
    expect(gotAt).toBeGreaterThan(0);
    expect(lockedOutAfterFreezeMs).toBeLessThan(2 * BATCH_IDLE_TIMEOUT_MS + 3000);
  } finally {
    stop = true;
    await direct.query('SELECT pg_terminate_backend($1)', [pid]);
    proxy.thaw();
    await copied;
    await proxy.close();
    await holder.end().catch(() => undefined);
    await next.end().catch(() => undefined);
  }
});

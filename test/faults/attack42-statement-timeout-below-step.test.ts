import { PassThrough } from 'node:stream';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { appendBatch } from '../../journal/append';
import { loadLineageKey, type LineageKey } from '../../journal/lineage';
import { parseRecord, type ParsedRecord } from '../../journal/record';
import { BATCH_IDLE_TIMEOUT_MS } from '../../journal/redelivery';
import { createPool, lockNames, type Pool, type PoolClient } from '../../shared/db';
import { createLogger } from '../../shared/logger';
import { createTestDatabase, viaProxy } from '../support/database';
import { baseConfig } from '../support/env';
import { freezableProxy } from '../support/freezable-proxy';

/**
 * attack42 (helper review of the partition-lock holder ending: shared/db.ts lockNames / waitForLock /
 * endStuckHolders, with the pool ingest really uses: cli/runtime.ts createPool(..., DATABASE_STATEMENT_TIMEOUT)).
 *
 * Invariant (docs/integrity.md, "Ingest"): a frozen holder of a partition lock keeps the partition's next owner out
 * for about two steps (2 x BATCH_IDLE_TIMEOUT_MS) plus its retry; the next owner never fails forever.
 *
 * Attack: DATABASE_STATEMENT_TIMEOUT set to 10s (accepted by the config: any positive duration; e.g. an operator
 * aligning it with the 10 s batch idle timeout; anything up to 10 s does the same). A batch holding partition 0's
 * lock is frozen inside its COPY (its connection through a TCP proxy that stops passing bytes, as a SIGSTOPped
 * process's kernel keeps the socket). The partition's next owner calls appendBatch with the same records on a pool
 * with that statement timeout, and retries it as handleBatch does (250 ms, 500 ms, 1 s, ...), for 50 s.
 *
 * Observed: every attempt fails with JournalUnavailableError ("canceling statement due to statement timeout",
 * 57014) 10 s in; the frozen holder is never ended (still alive after 50 s) and nothing is journaled: the partition
 * is stuck for as long as the frozen process lives (idle_in_transaction_session_timeout does not apply inside a COPY).
 *
 * Suspected cause: waitForLock's step is a lock_timeout of BATCH_IDLE_TIMEOUT_MS on a statement that the pool's
 * statement_timeout also bounds (shared/db.ts:295-299); when statement_timeout <= the step, the wait fails with 57014
 * (not 55P03, shared/db.ts:301) before the first look, so endStuckHolders never runs. LOCK_WAIT_MS is tied to the
 * default statement timeout (shared/db.ts:245), not to the configured one.
 *
 * Fixed: each step sets its own statement_timeout (the step plus 2 s) in its savepoint, and gives the transaction its
 * own back once the lock is taken; LOCK_WAIT_MS is its own 30 s. The holder's beat runs through the same proxy (its
 * connection parameters), so the freeze freezes the holder's whole process, as SIGSTOP would; the waiter ends the
 * holder once the beat is older than a step. The first attempt journals all 20, at the waiter's first or second look as
 * the beat's last run before the freeze falls (10.1 s and 20.1 s in two runs); the holder is gone.
 */
jest.setTimeout(180_000);

const STATEMENT_TIMEOUT_MS = 10_000;
const TOPIC = 'a42.stmt';
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let direct: Pool;
let lineageKey: LineageKey;
const log = createLogger('silent');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

beforeAll(async () => {
  db = await createTestDatabase(baseConfig().databaseUrl, 'a42_stmt_timeout');
  direct = createPool(db.databaseUrl, 2, log, 60_000);
  lineageKey = await loadLineageKey(direct, undefined);
});
afterAll(async () => {
  await direct?.end();
  await db?.drop();
});

function batch(): ParsedRecord[] {
  return Array.from({ length: 20 }, (_, i) =>
    parseRecord(
      {
        topic: TOPIC,
        partition: 0,
        offset: String(i),
        key: null,
        value: Buffer.from(JSON.stringify({ tenant_id: 'acme', seq: i })),
        timestamp: String(Date.UTC(2026, 0, 1)),
      },
      { maxBytes: 1024 * 1024, lineageKey },
    ),
  );
}

it('with DATABASE_STATEMENT_TIMEOUT=10s the next owner still ends a holder frozen in its COPY', async () => {
  const proxy = await freezableProxy('127.0.0.1', Number(new URL(db.databaseUrl).port));
  const url = viaProxy(db.databaseUrl, proxy.port);
  const holder = new pg.Client({ connectionString: url, application_name: 'a42-frozen-copy' });
  holder.on('error', () => undefined);
  await holder.connect();
  const { rows: me } = await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  const pid = me[0].pid;
  const ingestPool = createPool(db.databaseUrl, 2, log, STATEMENT_TIMEOUT_MS);
  const data = new PassThrough();
  try {
    // The frozen batch: its transaction as appendBatch opens it, the partition's lock, then a COPY it never feeds.
    await holder.query(`BEGIN; SET LOCAL idle_in_transaction_session_timeout = ${BATCH_IDLE_TIMEOUT_MS}`);
    await lockNames(holder as unknown as PoolClient, [`journal:${TOPIC}/0`], BATCH_IDLE_TIMEOUT_MS);
    await holder.query('CREATE TEMP TABLE a42_rows (n int)');
    const copy = holder.query(copyFrom('COPY a42_rows FROM STDIN'));
    copy.on('error', () => undefined);
    data.pipe(copy);
    for (let since = Date.now(); ;) {
      const { rows } = await direct.query<{ w: string | null }>(
        'SELECT wait_event AS w FROM pg_stat_activity WHERE pid = $1',
        [pid],
      );
      if (rows[0]?.w === 'ClientRead') break;
      if (Date.now() - since > 10_000) throw new Error(`holder not in ClientRead: ${JSON.stringify(rows)}`);
      await sleep(20);
    }
    proxy.freeze();

    const started = Date.now();
    const attempts: Array<{ atMs: number; outcome: string }> = [];
    let journaled = false;
    for (let attempt = 0; Date.now() - started < 50_000 && !journaled; attempt++) {
      try {
        const outcome = await appendBatch(ingestPool, batch());
        journaled = true;
        attempts.push({ atMs: Date.now() - started, outcome: `journaled ${outcome.journaled.length}` });
      } catch (err) {
        attempts.push({ atMs: Date.now() - started, outcome: `${(err as Error).name}: ${(err as Error).message}` });
        await sleep(Math.min(30_000, 250 * 2 ** attempt));
      }
    }
    const { rowCount: holderAlive } = await direct.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid]);
    const { rows } = await direct.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM event_journal WHERE topic = $1',
      [TOPIC],
    );
    console.log(JSON.stringify({ attempts, holderAlive, journaled: rows[0].n }));
    expect({ holderAlive, journaled: rows[0].n }).toEqual({ holderAlive: 0, journaled: 20 });
    expect(attempts[attempts.length - 1].atMs).toBeLessThan(2 * BATCH_IDLE_TIMEOUT_MS + 5000);
  } finally {
    await direct.query('SELECT pg_terminate_backend($1)', [pid]);
    data.destroy();
    proxy.thaw();
    await proxy.close();
    await holder.end().catch(() => undefined);
    await ingestPool.end().catch(() => undefined);
  }
});

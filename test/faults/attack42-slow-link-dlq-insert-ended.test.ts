import pg from 'pg';
import { appendBatch } from '../../journal/append';
import { loadLineageKey, type LineageKey } from '../../journal/lineage';
import { parseRecord, type ParsedRecord } from '../../journal/record';
import { BATCH_IDLE_TIMEOUT_MS } from '../../journal/redelivery';
import { createPool, lockNames, type Pool, type PoolClient } from '../../shared/db';
import { createLogger } from '../../shared/logger';
import { createTestDatabase, viaProxy } from '../support/database';
import { baseConfig } from '../support/env';
import { slowProxy } from '../support/slow-proxy';

/**
 * attack42 (helper review of the partition-lock holder ending: shared/db.ts lockNames / waitForLock /
 * endStuckHolders, as ingest uses it: journal/append.ts appendBatch, journal/redelivery.ts BATCH_IDLE_TIMEOUT_MS).
 *
 * Invariant (docs/integrity.md, "Ingest"; lockNames' doc comment): a live writer that is making progress is never
 * ended by a waiter. lockNames' comment takes a non-COPY statement waiting on its client at two looks as stuck
 * because "ingest's statements under its locks return a batch's rows at most".
 *
 * Attack: appendBatch, the product's batch write, on a pool whose link to Postgres is slow but moving (a TCP proxy
 * passing the client's bytes at 100 KB/s; nothing frozen). The batch is 400 records whose value is not JSON (about
 * 2.5 KB each): all go to the DLQ, written with one INSERT whose parameters (raw value, raw bytes: about 3 MB) go in
 * one Bind message, about 30 s on that link. Without anyone waiting, the same call dead-letters all 400 (checked:
 * 32 s: Postgres's idle_in_transaction_session_timeout does not end it, the session being active from the Parse
 * on). Here, once the INSERT is under way, the partition's next writer waits for the batch's lock
 * (journal:<topic>/0) with lockNames at the real step, BATCH_IDLE_TIMEOUT_MS.
 *
 * Observed: the waiter terminates the writer about two steps (20 s) after it started waiting; appendBatch fails with
 * JournalUnavailableError ("terminating connection due to administrator command"), nothing is dead-lettered, and
 * the same batch on the same link is ended again at every retry while the partition is contended.
 *
 * Suspected cause: a statement's parameters travel in the Bind message, which Postgres reads after the Parse has set
 * the session active (query_start) and before it runs it: meanwhile it waits in ClientRead, in the same statement,
 * with no progress view at all. endStuckHolders (shared/db.ts:336-348) counts any non-COPY statement seen so at two
 * looks as stuck; lockNames' premise (shared/db.ts:259-263) considers only results flowing out (ClientWrite), not a
 * batch's own rows flowing in (repository/event-dlq.ts insertDlqEntries, and the INSERT fallback
 * repository/event-journal.ts insertJournalEntries: every row of the batch in one Bind).
 *
 * Fixed: as in attack42-slow-link-copy-ended: the writer's session is tagged while it holds the batch's locks and its
 * process beats through the same slow link; the beat is fresh, so the writer is not ended. The writer dead-letters all
 * 400 in about 32.5 s; the waiter fails at LOCK_WAIT_MS (30 s) and would retry. (untilInserting matches the tagged
 * application_name, `a42-slow-ingest:<tag>`, which a session carries while it holds locks.)
 */
jest.setTimeout(180_000);

const RATE_BYTES_PER_S = 100_000;
const RECORDS = 400;
const TOPIC = 'a42.slowdlq';
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let direct: Pool;
let lineageKey: LineageKey;
const log = createLogger('silent');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

beforeAll(async () => {
  db = await createTestDatabase(baseConfig().databaseUrl, 'a42_slow_dlq');
  direct = createPool(db.databaseUrl, 2, log, 60_000);
  lineageKey = await loadLineageKey(direct, undefined);
});
afterAll(async () => {
  await direct?.end();
  await db?.drop();
});

function batch(): ParsedRecord[] {
  return Array.from({ length: RECORDS }, (_, i) =>
    parseRecord(
      {
        topic: TOPIC,
        partition: 0,
        offset: String(i),
        key: null,
        value: Buffer.from(`not json ${i} ${'x'.repeat(2500)}`),
        timestamp: String(Date.UTC(2026, 0, 1)),
      },
      { maxBytes: 1024 * 1024, lineageKey },
    ),
  );
}

/** Waits until a session of application `name` is running an INSERT INTO event_dlq. */
async function untilInserting(name: string): Promise<void> {
  const since = Date.now();
  for (;;) {
    const { rows } = await direct.query<{ wait_event: string | null }>(
      `SELECT wait_event FROM pg_stat_activity
        WHERE application_name LIKE $1 || ':%' AND state = 'active' AND query LIKE '%INSERT INTO event_dlq%'`,
      [name],
    );
    if (rows.length) return;
    if (Date.now() - since > 30_000) throw new Error('the DLQ insert never started');
    await sleep(50);
  }
}

it('a batch of dead letters written on a slow but moving link is not ended by the next writer of its partition', async () => {
  const target = new URL(db.databaseUrl);
  const proxy = await slowProxy('127.0.0.1', Number(target.port), RATE_BYTES_PER_S);
  const url = viaProxy(db.databaseUrl, proxy.port);
  const slow = createPool(url, 2, log, 120_000, 'a42-slow-ingest');
  const waiterClient = new pg.Client({ connectionString: db.databaseUrl, application_name: 'a42-next-owner' });
  waiterClient.on('error', () => undefined);
  await waiterClient.connect();
  let waiting: Promise<unknown> | undefined;
  try {
    const records = batch();
    expect(records.every((r) => !r.ok)).toBe(true);
    const started = Date.now();
    const appended = appendBatch(slow, records).then(
      (o) => ({ deadLetters: o.deadLetters.length, ms: Date.now() - started }),
      (err: Error) => ({ error: `${err.name}: ${err.message}`, ms: Date.now() - started }),
    );
    await untilInserting('a42-slow-ingest');
    const waitFrom = Date.now();
    waiting = (async () => {
      await waiterClient.query('BEGIN');
      await lockNames(waiterClient as unknown as PoolClient, [`journal:${TOPIC}/0`], BATCH_IDLE_TIMEOUT_MS);
      const gotMs = Date.now() - waitFrom;
      await waiterClient.query('COMMIT');
      return { gotLockAfterMs: gotMs };
    })().catch((err: Error) => ({ error: err.message }));
    const writer = await appended;
    const waiter = await waiting;
    const { rows } = await direct.query<{ n: number }>('SELECT count(*)::int AS n FROM event_dlq WHERE topic = $1', [
      TOPIC,
    ]);
    console.log(JSON.stringify({ writer, waiter, stored: rows[0].n }));
    expect({ writer, stored: rows[0].n }).toEqual({
      writer: { deadLetters: RECORDS, ms: expect.any(Number) },
      stored: RECORDS,
    });
  } finally {
    await waiting;
    await slow.end().catch(() => undefined);
    await proxy.close();
    await waiterClient.end().catch(() => undefined);
  }
});

import { BATCH_IDLE_TIMEOUT_MS } from '../../journal/redelivery';
import { copyJournalEntries, type NewJournalEntry } from '../../repository/event-journal';
import { createPool, lockNames, type Pool, type PoolClient } from '../../shared/db';
import { createLogger } from '../../shared/logger';
import { createTestDatabase, ownSession, viaProxy } from '../support/database';
import { baseConfig } from '../support/env';
import { slowProxy } from '../support/slow-proxy';

/**
 * attack42 (helper review of the partition-lock holder ending: shared/db.ts lockNames / waitForLock /
 * endStuckHolders, journal/redelivery.ts BATCH_IDLE_TIMEOUT_MS, repository/event-journal.ts copyJournalEntries).
 *
 * Invariant (docs/integrity.md, "Ingest"; lockNames' doc comment): a live writer that is making progress is never
 * ended by a waiter, "a slow but moving COPY" included.
 *
 * Attack: the lock is held (lockNames, the same keys as a batch, at ingest's step BATCH_IDLE_TIMEOUT_MS, 10 s) by a
 * session whose link to Postgres is slow but moving (a TCP proxy passing the client's bytes at 100 KB/s, nothing
 * frozen: every byte written arrives). It journals a batch of 1000 records of about 2.5 KB (2.6 MB) with the
 * product's own copyJournalEntries, which sends the whole batch as one string, hence one CopyData message
 * (Readable.from([text])). The transfer takes about 27 s (checked: without a waiter the same COPY commits all 1000).
 * Half a second in, the partition's next writer waits for the same lock with lockNames at the same step.
 *
 * Observed: the holder is terminated by the waiter at its second look, about 20.5 s in (the COPY fails with
 * "terminating connection due to administrator command"); the batch is not journaled, and the same batch on the same
 * link is ended again at every retry while the partition is contended. Any transfer longer than about two steps
 * does the same: e.g. a 10 MB fetch (INGEST_FETCH_BYTES_PER_PARTITION) over a 500 KB/s link. Waiters are common,
 * not only at a rebalance: every batch holding copies of the same replay takes the lock replay:<id>, whatever its
 * partition (docs/integrity.md: "Copies of one replay published to two Kafka partitions ... queue on the replay's
 * lock").
 *
 * Suspected cause: Postgres reads a CopyData message whole (CopyGetData -> pq_getmessage) before it adds its bytes to
 * pg_stat_progress_copy.bytes_processed, and waits in ClientRead meanwhile. copyJournalEntries sends a batch as a
 * single message (repository/event-journal.ts:114), so a COPY whose one message is still arriving looks exactly like
 * a frozen client to endStuckHolders (shared/db.ts:336-348): same query_start, ClientRead, bytes and tuples unchanged
 * at two looks a step apart.
 *
 * Fixed: a holder now proves that its process is alive. lockNames tags the holder's session for its transaction
 * (application_name <name>:<tag>) and starts the process's beat on the holder's own connection parameters, so through
 * the same slow link (its own connection: a SELECT 1 every second, crm-events-beat:<tag>). A tagged holder waiting on
 * its client is ended only when its beat's last statement is older than a step. Here the beat stays fresh: the COPY
 * commits all 1000 rows in about 27.6 s and the waiter gets the lock right after (27.6 s).
 */
jest.setTimeout(120_000);

const RATE_BYTES_PER_S = 100_000;
const RECORDS = 1000;
const NAME = 'journal:a42.leads/0';
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let direct: Pool;
const log = createLogger('silent');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

beforeAll(async () => {
  db = await createTestDatabase(baseConfig().databaseUrl, 'a42_slow_copy');
  direct = createPool(db.databaseUrl, 2, log, 60_000);
});
afterAll(async () => {
  await direct?.end();
  await db?.drop();
});

function entries(): NewJournalEntry[] {
  return Array.from({ length: RECORDS }, (_, i) => ({
    tenantId: 'a42',
    topic: 'a42.leads',
    payloadJson: JSON.stringify({ n: i, filler: 'x'.repeat(2500) }),
    replayCount: 0,
    replaySource: null,
    partition: 0,
    offset: String(i),
    key: null,
    keyBytes: null,
    headersJson: null,
    timestamp: null,
    contentHash: Buffer.alloc(32, i % 256),
  }));
}

it('a live batch COPY on a slow but moving link (one CopyData message, 27 s) is not ended by a waiter', async () => {
  const target = new URL(db.databaseUrl);
  const proxy = await slowProxy('127.0.0.1', Number(target.port), RATE_BYTES_PER_S);
  const url = viaProxy(db.databaseUrl, proxy.port);
  const { client: holder, pid } = await ownSession(url, 'a42-slow-writer');
  const { client: other } = await ownSession(db.databaseUrl, 'a42-waiter');
  let waiting: Promise<unknown> | undefined;
  try {
    await holder.query(`BEGIN; SET LOCAL idle_in_transaction_session_timeout = ${BATCH_IDLE_TIMEOUT_MS}`);
    await lockNames(holder as unknown as PoolClient, [NAME], BATCH_IDLE_TIMEOUT_MS);
    const started = Date.now();
    const copied = copyJournalEntries(holder as unknown as PoolClient, entries()).then(
      async () => {
        const copyMs = Date.now() - started;
        await holder.query('COMMIT');
        return { committed: true, copyMs };
      },
      (err: Error) => ({ committed: false, afterMs: Date.now() - started, error: err.message }),
    );
    await sleep(500);
    waiting = (async () => {
      await other.query('BEGIN');
      await lockNames(other as unknown as PoolClient, [NAME], BATCH_IDLE_TIMEOUT_MS);
      await other.query('COMMIT');
      return { gotLockAfterMs: Date.now() - started };
    })().catch((err: Error) => ({ error: err.message }));
    const holderEnded = await copied;
    const waiter = await waiting;
    const { rows } = await direct.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM event_journal WHERE tenant_id = 'a42'",
    );
    console.log(JSON.stringify({ holderEnded, waiter, journaled: rows[0].n }));
    expect({ holderEnded, journaled: rows[0].n }).toEqual({
      holderEnded: { committed: true, copyMs: expect.any(Number) },
      journaled: RECORDS,
    });
  } finally {
    await direct.query('SELECT pg_terminate_backend($1)', [pid]);
    await waiting;
    await proxy.close();
    await holder.end().catch(() => undefined);
    await other.end().catch(() => undefined);
  }
});

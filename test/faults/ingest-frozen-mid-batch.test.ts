import fc from 'fast-check';
import { appendBatch } from '../../journal/append';
import { JournalUnavailableError } from '../../journal/errors';
import { loadLineageKey, type LineageKey } from '../../journal/lineage';
import { parseRecord, type ParsedRecord } from '../../journal/record';
import { BATCH_IDLE_TIMEOUT_MS } from '../../journal/redelivery';
import { createPool, type Pool } from '../../shared/db';
import { createLogger } from '../../shared/logger';
import { createTestDatabase, viaProxy } from '../support/database';
import { baseConfig } from '../support/env';
import { freezableProxy, type FreezableProxy } from '../support/freezable-proxy';

/**
 * Found by CI (attack30-ingest-peer-frozen-mid-join, fresh-clone run of 3303ffb): an ingest process frozen (SIGSTOP)
 * in the middle of a batch kept its Postgres connection, so its transaction kept the partition's advisory lock. The
 * consumer the group gave the partition to queued on that lock until the frozen process was killed: 67 records were
 * still unjournaled 80 s after the traffic ended, and all of them were journaled within 3 s of the SIGKILL.
 *
 * Invariant (docs/integrity.md, "Ingest"): a batch whose process stops mid-transaction holds its partitions for about
 * BATCH_IDLE_TIMEOUT_MS when it stopped between statements (Postgres's idle timeout), about twice that when it stopped
 * inside one (the next owner's second look at it ends it: lockNames). The next owner's batch of the same records
 * journals them while the first process is still frozen; when it wakes, its batch ends as an outage (redelivered,
 * never dead-lettered); every record is in the journal once.
 *
 * Attack: the first batch's connection is frozen (a TCP proxy that stops passing bytes, as a stopped process's kernel
 * keeps the socket): after its partition's lock, as its COPY asks for its data (the server then waits in the statement,
 * where neither statement_timeout nor the idle timeout applies), and after a generated number of its statements.
 * Before: the next owner waited on the lock for its whole statement timeout (60 s here) and failed; with only the idle
 * timeout, the frozen COPY still held it so. With the lock's looks (b055ee3) the frozen COPY was ended at the next
 * owner's first step (10 s); since a holder is ended only at a second look without progress (attack41), at its second
 * (20 s, within LOCK_WAIT_MS's 30 s).
 *
 * Also (docs/integrity.md, "Ingest"): a live writer whose event loop stalls longer than BATCH_IDLE_TIMEOUT_MS between
 * two statements of its batch has its session ended by Postgres (idle_in_transaction_session_timeout); the batch
 * fails as an outage and its retry journals every record once.
 */
jest.setTimeout(120_000);

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let direct: Pool;
let lineageKey: LineageKey;
const log = createLogger('silent');

beforeAll(async () => {
  db = await createTestDatabase(baseConfig().databaseUrl, 'frozen_batch');
  direct = createPool(db.databaseUrl, 2, log, 60_000);
  lineageKey = await loadLineageKey(direct, undefined);
});
afterAll(async () => {
  await direct?.end();
  await db?.drop();
});

let nextOffset = 0;
function records(count: number): ParsedRecord[] {
  return Array.from({ length: count }, () => {
    const offset = nextOffset++;
    return parseRecord(
      {
        topic: 'frozen.leads',
        partition: 0,
        offset: String(offset),
        key: null,
        value: Buffer.from(JSON.stringify({ tenant_id: 'acme', seq: offset })),
        timestamp: String(Date.UTC(2026, 0, 1)),
      },
      { maxBytes: 1024 * 1024, lineageKey },
    );
  });
}

/** Where the batch's connection freezes: once that many statements were answered, or as its COPY asks for data. */
type FreezePoint = number | 'copy';

/** A pool of one connection through `proxy` that freezes the proxy at `at`. */
function freezingPool(proxy: FreezableProxy, at: FreezePoint) {
  const url = viaProxy(db.databaseUrl, proxy.port);
  const pool = createPool(url, 1, log, 60_000, 'crm-events-sink-frozen');
  const statements: string[] = [];
  let frozen = false;
  const freeze = () => {
    frozen = true;
    proxy.freeze();
  };
  pool.on('connect', (client) => {
    const query = client.query.bind(client) as (...args: unknown[]) => Promise<unknown>;
    (client as unknown as { query: typeof query }).query = (...args: unknown[]) => {
      const answered = query(...args);
      if (typeof (answered as { then?: unknown })?.then !== 'function') {
        // A COPY (a stream): the server has taken its statement and waits for its data, which is sent after this.
        const copy = answered as unknown as { handleCopyInResponse: (...a: unknown[]) => unknown };
        const asked = copy.handleCopyInResponse.bind(copy);
        copy.handleCopyInResponse = (...a: unknown[]) => {
          statements.push('COPY (asked for its data)');
          if (at === 'copy' && !frozen) freeze();
          return asked(...a);
        };
        return answered;
      }
      const text = typeof args[0] === 'string' ? args[0] : String((args[0] as { text?: string })?.text);
      void answered.then(
        () => {
          statements.push(text.slice(0, 40));
          if (statements.length === at && !frozen) freeze();
        },
        () => undefined,
      );
      return answered;
    };
  });
  return { pool, statements, frozen: () => frozen };
}

/** The frozen pool's sessions Postgres still has. */
/** The frozen pool's sessions that still hold an advisory lock (a frozen one before its lock may stay: it holds none). */
async function frozenLockHolders(): Promise<number> {
  const { rows } = await direct.query(
    `SELECT a.pid FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid AND l.locktype = 'advisory'
      WHERE a.application_name LIKE 'crm-events-sink-frozen:%'`, // tagged while it holds locks (lockNames)
  );
  return rows.length;
}

it('a batch frozen mid-transaction lets the next owner journal its records while it is still frozen', async () => {
  // Its statements: 1 BEGIN, 2 the partition's lock, 3 what is stored already, 4 the journal ids, then the COPY's
  // statement (written into the frozen socket: the server never sees it). Frozen after 2 first, then two generated.
  // Also frozen as its COPY asks for its data: the server then waits in the statement for data that does not come.
  const freezePoints: FreezePoint[] = [2, 'copy', ...fc.sample(fc.integer({ min: 1, max: 4 }), 1)];
  for (const at of freezePoints) {
    const proxy = await freezableProxy('127.0.0.1', Number(new URL(db.databaseUrl).port));
    const { pool: frozenPool, statements, frozen } = freezingPool(proxy, at);
    try {
      const from = nextOffset;
      const batch = records(20);
      const first = appendBatch(frozenPool, batch).then(
        (outcome) => ({ resolved: outcome.outcomes.every((o) => o === 'redelivered') ? 'redelivered' : 'journaled' }),
        (err: Error) => ({ rejected: err instanceof JournalUnavailableError ? 'outage' : err.message }),
      );
      const frozeAt = Date.now();
      while (!frozen() && Date.now() - frozeAt < 10_000) {
        await new Promise((res) => setTimeout(res, 20));
      }
      expect(frozen()).toBe(true);

      // The next owner of the partition gets the same records and journals them while the first is still frozen.
      const second = await appendBatch(direct, batch);
      const secondTookMs = Date.now() - frozeAt;
      const frozenLocksLeft = await frozenLockHolders();

      proxy.thaw();
      const firstEnded = await Promise.race([
        first,
        new Promise((res) => setTimeout(() => res({ hung: true }), 30_000)),
      ]);
      const { rows } = await direct.query<{ total: string; coords: string }>(
        `SELECT count(*) AS total, count(DISTINCT kafka_offset) AS coords FROM event_journal
          WHERE topic = 'frozen.leads' AND kafka_offset >= $1 AND kafka_offset < $2`,
        [from, nextOffset],
      );
      const dlq = await direct.query(`SELECT 1 FROM event_dlq WHERE topic = 'frozen.leads'`);
      console.log(JSON.stringify({ at, statements, secondTookMs, firstEnded }));
      // Frozen between statements: Postgres's idle timeout ends it; inside the COPY: the next owner's second look.
      expect(secondTookMs).toBeLessThan((at === 'copy' ? 2 : 1) * BATCH_IDLE_TIMEOUT_MS + 3000);
      expect({
        secondJournaled: second.journaled.length,
        frozenLocksLeft,
        firstEnded,
        total: Number(rows[0].total),
        coords: Number(rows[0].coords),
        dlq: dlq.rowCount,
      }).toEqual({
        secondJournaled: 20,
        frozenLocksLeft: 0,
        firstEnded: expect.not.objectContaining({ hung: true }),
        total: 20,
        coords: 20,
        dlq: 0,
      });
      if ('resolved' in (firstEnded as object)) expect(firstEnded).toEqual({ resolved: 'redelivered' });
      else expect(firstEnded).toEqual({ rejected: 'outage' });
    } finally {
      proxy.thaw();
      await frozenPool.end().catch(() => undefined);
      await proxy.close();
    }
  }
});

it('a live writer whose event loop stalls past BATCH_IDLE_TIMEOUT_MS mid-batch fails as an outage; its retry journals all once', async () => {
  const pool = createPool(db.databaseUrl, 1, log, 60_000, 'crm-events-sink-stalled');
  let stalled = false;
  pool.on('connect', (client) => {
    const query = client.query.bind(client) as (...args: unknown[]) => unknown;
    let sent = 0;
    (client as unknown as { query: typeof query }).query = (...args: unknown[]) => {
      // Statements: 1 BEGIN, 2 the partition's lock, 3 what is stored. Before the third the whole process stops (a
      // synchronous wait: no timer, no socket is served), as a long garbage collection or a starved CPU would.
      if (++sent === 3 && !stalled) {
        stalled = true;
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, BATCH_IDLE_TIMEOUT_MS + 2000);
      }
      return query(...args);
    };
  });
  try {
    const from = nextOffset;
    const batch = records(20);
    const first = await appendBatch(pool, batch).then(
      () => 'journaled',
      (err: Error & { cause?: { code?: string } }) =>
        err instanceof JournalUnavailableError ? `outage (${String(err.cause?.code ?? err.message)})` : err.message,
    );
    // The consumer pauses and retries the same batch (ingest's outage handling): here at once, on the same pool.
    const retry = await appendBatch(pool, batch);
    const { rows } = await direct.query<{ total: string; coords: string }>(
      `SELECT count(*) AS total, count(DISTINCT kafka_offset) AS coords FROM event_journal
        WHERE topic = 'frozen.leads' AND kafka_offset >= $1 AND kafka_offset < $2`,
      [from, nextOffset],
    );
    const dlq = await direct.query(`SELECT 1 FROM event_dlq WHERE topic = 'frozen.leads'`);
    console.log(JSON.stringify({ stalled, first }));
    expect({
      stalled,
      first,
      retryJournaled: retry.journaled.length,
      total: Number(rows[0].total),
      coords: Number(rows[0].coords),
      dlq: dlq.rowCount,
    }).toEqual({ stalled: true, first: 'outage (25P03)', retryJournaled: 20, total: 20, coords: 20, dlq: 0 });
  } finally {
    await pool.end().catch(() => undefined);
  }
});

import fc from 'fast-check';
import { appendBatch } from '../../journal/append';
import { JournalUnavailableError } from '../../journal/errors';
import { loadLineageKey, type LineageKey } from '../../journal/lineage';
import { parseRecord, type ParsedRecord } from '../../journal/record';
import { createPool, type Pool } from '../../shared/db';
import { createLogger } from '../../shared/logger';
import { createTestDatabase } from '../support/database';
import { baseConfig } from '../support/env';
import { freezableProxy, type FreezableProxy } from '../support/freezable-proxy';

/**
 * Found by CI (attack30-ingest-peer-frozen-mid-join, fresh-clone run of 3303ffb): an ingest process frozen (SIGSTOP)
 * in the middle of a batch kept its Postgres connection, so its transaction kept the partition's advisory lock. The
 * consumer the group gave the partition to queued on that lock until the frozen process was killed: 67 records were
 * still unjournaled 80 s after the traffic ended, and all of them were journaled within 3 s of the SIGKILL.
 *
 * Invariant (docs/integrity.md, "Ingest"): a batch whose process stops mid-transaction holds its partitions for at
 * most BATCH_IDLE_TIMEOUT_MS (the next owner's statement timeout, 60 s here, would end its wait otherwise). The next owner's batch of the same records journals them while the first process is
 * still frozen; when it wakes, its batch ends as an outage (redelivered, never dead-lettered); every record is in the
 * journal once.
 *
 * Attack: the first batch's connection is frozen (a TCP proxy that stops passing bytes, as a stopped process's kernel
 * keeps the socket) after a generated number of its statements, the partition's lock among them or not.
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

/** A pool of one connection through `proxy` that freezes the proxy once `afterStatements` statements were answered. */
function freezingPool(proxy: FreezableProxy, afterStatements: number): { pool: Pool; statements: string[] } {
  const url = new URL(db.databaseUrl);
  url.hostname = '127.0.0.1';
  url.port = String(proxy.port);
  const pool = createPool(url.toString(), 1, log, 60_000, 'crm-events-sink-frozen');
  const statements: string[] = [];
  pool.on('connect', (client) => {
    const query = client.query.bind(client) as (...args: unknown[]) => Promise<unknown>;
    (client as unknown as { query: typeof query }).query = (...args: unknown[]) => {
      const answered = query(...args);
      // A COPY is a stream (its statement answered when its data is in): statements are counted, not streams.
      if (typeof (answered as { then?: unknown })?.then !== 'function') return answered;
      const text = typeof args[0] === 'string' ? args[0] : String((args[0] as { text?: string })?.text);
      void answered.then(
        () => {
          statements.push(text.slice(0, 40));
          if (statements.length === afterStatements) proxy.freeze();
        },
        () => undefined,
      );
      return answered;
    };
  });
  return { pool, statements };
}

async function idleInTransaction(): Promise<number> {
  const { rows } = await direct.query<{ n: string }>(
    `SELECT count(*) AS n FROM pg_stat_activity
      WHERE application_name = 'crm-events-sink-frozen' AND state = 'idle in transaction'`,
  );
  return Number(rows[0].n);
}

it('a batch frozen mid-transaction lets the next owner journal its records while it is still frozen', async () => {
  // Its statements: 1 BEGIN, 2 the partition's lock, 3 what is stored already, 4 the journal ids, then the COPY's
  // statement (written into the frozen socket: the server never sees it). Frozen after 2 first, then two generated.
  const freezePoints = [2, ...fc.sample(fc.integer({ min: 1, max: 4 }), 2)];
  const seen: unknown[] = [];
  for (const afterStatements of freezePoints) {
    const proxy = await freezableProxy('127.0.0.1', Number(new URL(db.databaseUrl).port));
    const { pool: frozenPool, statements } = freezingPool(proxy, afterStatements);
    try {
      const from = nextOffset;
      const batch = records(20);
      const first = appendBatch(frozenPool, batch).then(
        (outcome) => ({ resolved: outcome.outcomes.every((o) => o === 'redelivered') ? 'redelivered' : 'journaled' }),
        (err: Error) => ({ rejected: err instanceof JournalUnavailableError ? 'outage' : err.message }),
      );
      const frozeAt = Date.now();
      while (statements.length < afterStatements && Date.now() - frozeAt < 10_000) {
        await new Promise((res) => setTimeout(res, 20));
      }
      expect(statements.length).toBe(afterStatements);

      // The next owner of the partition gets the same records and journals them while the first is still frozen.
      const second = await appendBatch(direct, batch);
      const secondTookMs = Date.now() - frozeAt;
      // Its backend leaves pg_stat_activity just after it released its locks.
      let frozenSessionsLeft = await idleInTransaction();
      for (let i = 0; i < 50 && frozenSessionsLeft > 0; i++) {
        await new Promise((res) => setTimeout(res, 100));
        frozenSessionsLeft = await idleInTransaction();
      }

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
      seen.push({ afterStatements, statements, secondTookMs, firstEnded });
      expect({
        secondJournaled: second.journaled.length,
        frozenSessionsLeft,
        firstEnded,
        total: Number(rows[0].total),
        coords: Number(rows[0].coords),
        dlq: dlq.rowCount,
      }).toEqual({
        secondJournaled: 20,
        frozenSessionsLeft: 0,
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
  console.log(JSON.stringify(seen));
});

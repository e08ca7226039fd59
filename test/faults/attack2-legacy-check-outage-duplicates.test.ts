import { appendBatch } from '../../journal/append';
import { parseRecord, type ParsedRecord } from '../../journal/record';
import { createPool, type Pool, type PoolClient } from '../../shared/db';
import { createLogger } from '../../shared/logger';
import { createTestDatabase } from '../support/database';
import { baseConfig } from '../support/env';

// Invariant 2 (docs/integrity.md): a record at coordinates that hold a row from before migration 007 (no content
// hash) is a redelivery when the stored row says the same. The comparison (repository/event-journal.ts
// legacyJournalMatches, repository/event-dlq.ts legacyDlqMatches) swallows every error with `.catch(() => rows: [])`,
// outages included: when Postgres drops the connection during that comparison, the redelivered record is classified
// as a coordinate reuse and written a second time (the legacy row has a NULL hash, so the unique key does not stop
// it). An outage should pause ingestion (JournalUnavailableError, retried), never turn a redelivery into a new row.

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let pool: Pool;
const options = { maxBytes: 1024 * 1024, lineageKey: Buffer.alloc(32, 7) };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

beforeAll(async () => {
  db = await createTestDatabase(baseConfig().databaseUrl, 'attack2_legacy_outage');
  pool = createPool(db.databaseUrl, 4, createLogger('silent'));
});
afterAll(async () => {
  await pool?.end();
  await db?.drop();
});

const at = (topic: string, offset: number, value: string): ParsedRecord =>
  parseRecord(
    { topic, partition: 0, offset: String(offset), key: null, value: Buffer.from(value), timestamp: '1700000000000' },
    options,
  );

/**
 * The real pool, except that the first legacy comparison runs on a connection whose backend Postgres has just
 * terminated (pg_terminate_backend: what a Postgres restart or failover does to a connection in use). The comparison
 * runs on the batch's transaction client (redelivery.ts classifies under the batch's locks), so clients are wrapped.
 */
function poolWithOneDroppedConnection(): { pool: Pool; dropped: () => number } {
  let dropped = 0;
  const wrap = (client: PoolClient): PoolClient =>
    new Proxy(client, {
      get: (target, prop) => {
        if (prop !== 'query') {
          const value = Reflect.get(target, prop, target) as unknown;
          return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
        }
        return async (text: unknown, values?: unknown[]) => {
          if (dropped === 0 && typeof text === 'string' && /content_hash IS NULL/.test(text)) {
            dropped += 1;
            await pool.query('SELECT pg_terminate_backend($1)', [
              (target as unknown as { processID: number }).processID,
            ]);
            await sleep(200);
          }
          return target.query(text as string, values);
        };
      },
    });
  const proxy = new Proxy(pool, {
    get: (target, prop, receiver) =>
      prop === 'connect' ? async () => wrap(await target.connect()) : Reflect.get(target, prop, receiver),
  });
  return { pool: proxy, dropped: () => dropped };
}

/** What the consumer does: retry the batch while the journal is unavailable. */
async function appendLikeTheConsumer(p: Pool, records: ParsedRecord[]) {
  for (let attempt = 0; attempt < 10; attempt++) {
    try {
      return await appendBatch(p, records);
    } catch (err) {
      if ((err as Error).name !== 'JournalUnavailableError') throw err;
      await sleep(100);
    }
  }
  throw new Error('journal unavailable for 10 attempts');
}

async function rowsAt(table: string, topic: string, offset: number): Promise<number> {
  const { rows } = await pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM ${table} WHERE topic = $1 AND kafka_partition = 0 AND kafka_offset = $2`,
    [topic, offset],
  );
  return rows[0].n;
}

it('a redelivery of a pre-007 journal row is not journaled twice when Postgres drops the connection mid-check', async () => {
  const topic = `attack2.legacy.j.${Date.now()}`;
  const payload = '{"tenant_id":"acme","n":1}';
  await pool.query(
    `INSERT INTO event_journal (tenant_id, topic, payload, kafka_partition, kafka_offset) VALUES ('acme', $1, $2, 0, 0)`,
    [topic, payload],
  );
  const faulty = poolWithOneDroppedConnection();

  const outcome = await appendLikeTheConsumer(faulty.pool, [at(topic, 0, payload)]);

  expect(faulty.dropped()).toBe(1);
  expect(await rowsAt('event_journal', topic, 0)).toBe(1); // fails: 2, the same record journaled twice
  expect(outcome.outcomes).toEqual(['redelivered']);
  expect(outcome.reused).toEqual([]);
});

it('a redelivery of a pre-007 dead letter is not dead-lettered twice when Postgres drops the connection mid-check', async () => {
  const topic = `attack2.legacy.d.${Date.now()}`;
  await pool.query(
    `INSERT INTO event_dlq (topic, raw_value, error, reason, kafka_partition, kafka_offset)
     VALUES ($1, 'not json', 'Record value is not valid JSON', 'invalid_json', 0, 0)`,
    [topic],
  );
  const faulty = poolWithOneDroppedConnection();

  const outcome = await appendLikeTheConsumer(faulty.pool, [at(topic, 0, 'not json')]);

  expect(faulty.dropped()).toBe(1);
  expect(await rowsAt('event_dlq', topic, 0)).toBe(1); // fails: 2, the same record dead-lettered twice
  expect(outcome.outcomes).toEqual(['redelivered']);
});

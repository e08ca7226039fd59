import { parseRecord, type ParsedRecord } from '../../ingest/parse';
import { persistBatch } from '../../ingest/persist-batch';
import { createPool, type Pool } from '../../shared/db';
import { createLogger } from '../../shared/logger';
import { createTestDatabase } from '../support/database';
import { baseConfig } from '../support/env';

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let pool: Pool;

beforeAll(async () => {
  db = await createTestDatabase(baseConfig().databaseUrl, 'persist_batch');
  pool = createPool(db.databaseUrl, 3, createLogger('silent'));
});
afterAll(async () => {
  await pool?.end();
  await db?.drop();
});

let nextOffset = 0;
/** Records as the consumer parses them, on one topic and partition, at fresh offsets. */
function records(payloads: unknown[], topic = 'persist.leads'): ParsedRecord[] {
  return payloads.map((payload) =>
    parseRecord(
      { topic, partition: 0, offset: String(nextOffset++), key: null, value: Buffer.from(JSON.stringify(payload)) },
      1024 * 1024,
    ),
  );
}

it('journals a batch with the ids and received_at it reports, payloads byte for byte whatever they contain', async () => {
  const awkward = [
    { tenant_id: 'acme', note: 'tab\there, newline\nhere, return\rhere' },
    { tenant_id: 'acme', path: 'C:\\temp\\new', literal: '\\N', quote: '"\'' },
    { tenant_id: 'ac\tme', emoji: '🚀 ünïcödé', nested: { deep: [1, { x: null }] } },
    { tenant_id: 'acme', empty: '', zero: 0, big: 1234567890123456 },
  ];
  const batch = records(awkward);
  const outcome = await persistBatch(pool, batch);

  expect(outcome.journaled).toHaveLength(4);
  expect(outcome.duplicates).toBe(0);
  const { rows } = await pool.query(
    'SELECT id, tenant_id, payload, received_at, kafka_offset FROM event_journal WHERE id = ANY($1) ORDER BY id',
    [outcome.journaled.map((j) => j.row.id)],
  );
  expect(rows.map((r) => r.payload)).toEqual(awkward);
  expect(rows.map((r) => r.tenant_id)).toEqual(['acme', 'acme', 'ac\tme', 'acme']);
  outcome.journaled.forEach(({ row }, i) => {
    expect(row.id).toBe(rows[i].id);
    expect(row.kafka_offset).toBe(rows[i].kafka_offset);
    expect(row.received_at.getTime()).toBe(rows[i].received_at.getTime());
  });
});

it('a redelivered batch journals nothing twice, and a batch half redelivered journals the new half', async () => {
  const first = records(Array.from({ length: 50 }, (_, i) => ({ tenant_id: 'redeliver', n: i })));
  const once = await persistBatch(pool, first);
  expect(once.journaled).toHaveLength(50);

  const again = await persistBatch(pool, first);
  expect(again).toMatchObject({ journaled: [], duplicates: 50, deadLetters: [] });

  const fresh = records(Array.from({ length: 30 }, (_, i) => ({ tenant_id: 'redeliver', n: 50 + i })));
  const mixed = await persistBatch(pool, [...first.slice(25), ...fresh]);
  expect(mixed.duplicates).toBe(25);
  expect(mixed.journaled.map((j) => j.record.entry.offset)).toEqual(
    fresh.map((r) => (r.ok ? r.entry.offset : undefined)),
  );

  const { rows } = await pool.query(
    "SELECT count(*)::int AS n, count(DISTINCT payload->>'n')::int AS distinct_n FROM event_journal WHERE tenant_id = 'redeliver'",
  );
  expect(rows[0]).toEqual({ n: 80, distinct_n: 80 });
});

it('sends a row Postgres refuses to the DLQ with its SQLSTATE and journals the rest of the batch', async () => {
  // jsonb refuses the \u0000 escape; JSON.parse accepts it, so only Postgres can say no.
  const batch = records([
    { tenant_id: 'nul', n: 1 },
    { tenant_id: 'nul', text: 'a\u0000b' },
    { tenant_id: 'nul', n: 3 },
  ]);
  const outcome = await persistBatch(pool, batch);

  expect(outcome.journaled.map((j) => j.record.entry.payloadJson)).toEqual([
    JSON.stringify({ tenant_id: 'nul', n: 1 }),
    JSON.stringify({ tenant_id: 'nul', n: 3 }),
  ]);
  expect(outcome.deadLetters).toHaveLength(1);
  expect(outcome.deadLetters[0].entry.error).toMatch(/SQLSTATE 22P05/);
  const { rows } = await pool.query("SELECT reason, raw_value FROM event_dlq WHERE tenant_id = 'nul'");
  expect(rows).toEqual([{ reason: 'db_error', raw_value: JSON.stringify({ tenant_id: 'nul', text: 'a\u0000b' }) }]);
});

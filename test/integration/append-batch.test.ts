import { appendBatch } from '../../journal/append';
import { loadLineageKey, type LineageKey } from '../../journal/lineage';
import { parseRecord, type ParsedRecord } from '../../journal/record';
import { createPool, type Pool } from '../../shared/db';
import { createLogger } from '../../shared/logger';
import { createTestDatabase } from '../support/database';
import { baseConfig } from '../support/env';

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let pool: Pool;
let lineageKey: LineageKey;

beforeAll(async () => {
  db = await createTestDatabase(baseConfig().databaseUrl, 'append_batch');
  pool = createPool(db.databaseUrl, 3, createLogger('silent'));
  lineageKey = await loadLineageKey(pool, undefined);
});
afterAll(async () => {
  await pool?.end();
  await db?.drop();
});

let nextOffset = 0;
/** Records as the consumer parses them, on one topic and partition, at fresh offsets. */
function records(payloads: unknown[], topic = 'append.leads'): ParsedRecord[] {
  return payloads.map((payload) =>
    parseRecord(
      {
        topic,
        partition: 0,
        offset: String(nextOffset++),
        key: null,
        value: Buffer.from(JSON.stringify(payload)),
        timestamp: String(Date.UTC(2026, 0, 1)),
      },
      { maxBytes: 1024 * 1024, lineageKey },
    ),
  );
}

/** What either table stores for a parsed record. */
const stored = (record: ParsedRecord) => (record.ok ? record.entry : record.dlq);

it('journals a batch with the ids and received_at it reports, payloads byte for byte whatever they contain', async () => {
  const awkward = [
    { tenant_id: 'acme', note: 'tab\there, newline\nhere, return\rhere' },
    { tenant_id: 'acme', path: 'C:\\temp\\new', literal: '\\N', quote: '"\'' },
    { tenant_id: 'acme', emoji: '🚀 ünïcödé', nested: { deep: [1, { x: null }] } },
    { tenant_id: 'acme', empty: '', zero: 0, big: 1234567890123456 },
  ];
  const batch = records(awkward);
  const outcome = await appendBatch(pool, batch);

  expect(outcome.journaled).toHaveLength(4);
  expect(outcome.redelivered).toBe(0);
  expect(outcome.outcomes).toEqual(['journaled', 'journaled', 'journaled', 'journaled']);
  const { rows } = await pool.query(
    `SELECT id, tenant_id, payload, received_at, kafka_offset, content_hash FROM event_journal
      WHERE id = ANY($1) ORDER BY id`,
    [outcome.journaled.map((j) => j.row.id)],
  );
  expect(rows.map((r) => r.payload)).toEqual(awkward);
  expect(rows.map((r) => r.tenant_id)).toEqual(['acme', 'acme', 'acme', 'acme']);
  outcome.journaled.forEach(({ row, record }, i) => {
    expect(row.id).toBe(rows[i].id);
    expect(row.kafka_offset).toBe(rows[i].kafka_offset);
    expect(row.received_at.getTime()).toBe(rows[i].received_at.getTime());
    expect(rows[i].content_hash).toEqual(record.entry.contentHash);
  });
});

it('a tenant with a control character is dead-lettered as invalid_tenant, the rest of the batch journaled', async () => {
  const batch = records([
    { tenant_id: 'acme', n: 1 },
    { tenant_id: 'ac\tme', n: 2 },
  ]);
  const outcome = await appendBatch(pool, batch);
  expect(outcome.outcomes).toEqual(['journaled', 'dead_lettered']);
  expect(outcome.deadLetters.map((d) => d.reason)).toEqual(['invalid_tenant']);
  const { offset, contentHash } = stored(batch[1]);
  const { rows } = await pool.query('SELECT reason, tenant_id, content_hash FROM event_dlq WHERE kafka_offset = $1', [
    offset,
  ]);
  expect(rows).toEqual([{ reason: 'invalid_tenant', tenant_id: null, content_hash: contentHash }]);
});

it('a redelivered batch journals nothing twice, and a batch half redelivered journals the new half', async () => {
  const first = records(Array.from({ length: 50 }, (_, i) => ({ tenant_id: 'redeliver', n: i })));
  const once = await appendBatch(pool, first);
  expect(once.journaled).toHaveLength(50);

  const again = await appendBatch(pool, first);
  expect(again).toMatchObject({ journaled: [], redelivered: 50, deadLetters: [], reused: [] });
  expect(again.outcomes).toEqual(Array(50).fill('redelivered'));

  const fresh = records(Array.from({ length: 30 }, (_, i) => ({ tenant_id: 'redeliver', n: 50 + i })));
  const mixed = await appendBatch(pool, [...first.slice(25), ...fresh]);
  expect(mixed.redelivered).toBe(25);
  expect(mixed.journaled.map((j) => j.record.entry.offset)).toEqual(
    fresh.map((r) => (r.ok ? r.entry.offset : undefined)),
  );

  const { rows } = await pool.query(
    "SELECT count(*)::int AS n, count(DISTINCT payload->>'n')::int AS distinct_n FROM event_journal WHERE tenant_id = 'redeliver'",
  );
  expect(rows[0]).toEqual({ n: 80, distinct_n: 80 });
});

it('sends a row Postgres refuses to the DLQ with its SQLSTATE and raw bytes, and journals the rest of the batch', async () => {
  // jsonb refuses the \u0000 escape; JSON.parse accepts it, so only Postgres can say no.
  const refused = { tenant_id: 'nul', text: 'a\u0000b' };
  const batch = records([{ tenant_id: 'nul', n: 1 }, refused, { tenant_id: 'nul', n: 3 }]);
  const outcome = await appendBatch(pool, batch);

  expect(outcome.outcomes).toEqual(['journaled', 'dead_lettered', 'journaled']);
  expect(outcome.journaled.map((j) => j.record.entry.payloadJson)).toEqual([
    JSON.stringify({ tenant_id: 'nul', n: 1 }),
    JSON.stringify({ tenant_id: 'nul', n: 3 }),
  ]);
  expect(outcome.deadLetters).toHaveLength(1);
  expect(outcome.deadLetters[0].reason).toBe('db_error');
  expect(outcome.deadLetters[0].entry.error).toMatch(/SQLSTATE 22P05/);
  const { rows } = await pool.query(
    "SELECT reason, raw_value, raw_bytes, content_hash, error FROM event_dlq WHERE tenant_id = 'nul'",
  );
  expect(rows).toEqual([
    {
      reason: 'db_error',
      raw_value: JSON.stringify(refused),
      raw_bytes: Buffer.from(JSON.stringify(refused)),
      content_hash: stored(batch[1]).contentHash,
      error: expect.stringMatching(/SQLSTATE 22P05/),
    },
  ]);
});

import fc from 'fast-check';
import { appendBatch } from '../../journal/append';
import type { RecordOutcome } from '../../journal/kinds';
import { parseRecord, type KafkaRecord, type ParsedRecord } from '../../journal/record';
import { createPool, type Pool } from '../../shared/db';
import { createLogger } from '../../shared/logger';
import { createTestDatabase } from '../support/database';
import { baseConfig } from '../support/env';

// appendBatch against a real Postgres: invariants 1 to 3 of docs/integrity.md, checked against a model.

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let pool: Pool;
const options = { maxBytes: 1024 * 1024, lineageKey: Buffer.alloc(32, 7) };

beforeAll(async () => {
  db = await createTestDatabase(baseConfig().databaseUrl, 'journal_append');
  pool = createPool(db.databaseUrl, 4, createLogger('silent'));
});
afterAll(async () => {
  await pool?.end();
  await db?.drop();
});

const parse = (record: KafkaRecord) => parseRecord(record, options);
const at = (
  topic: string,
  partition: number,
  offset: number,
  value: string | Buffer | null,
  timestamp = '1700000000000',
) =>
  parse({
    topic,
    partition,
    offset: String(offset),
    key: null,
    value: typeof value === 'string' ? Buffer.from(value) : value,
    timestamp,
  });

async function count(table: string, topic: string): Promise<number> {
  const { rows } = await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table} WHERE topic = $1`, [topic]);
  return rows[0].n;
}

describe('model: every consumed record ends journaled, dead-lettered or as a proven redelivery', () => {
  // Each step is a batch on one partition. A record is new (fresh offset), a redelivery of an earlier record (same
  // offset, same bytes), or a coordinate reuse (an earlier offset with different bytes, as after a topic re-creation).
  // Values are good events, or bad ones of several kinds, including ones Postgres itself refuses.
  const good = fc
    .record({ tenant_id: fc.constantFrom('acme', 'globex'), n: fc.integer() })
    .map((v) => ({ v: JSON.stringify(v) as string | Buffer | null, good: true }));
  const bad = fc
    .oneof(
      fc.constant('{"tenant_id":"acme","text":"a\\u0000b"}'), // jsonb refuses the escape: db_error
      fc.constant('{"note":"a\\u0000b"}'), // no tenant, and jsonb refuses it in the DLQ too: safe form
      fc.constant('not json'),
      fc.constant(null),
      fc.uint8Array({ minLength: 1, maxLength: 20 }).map((b) => Buffer.from(b)),
    )
    .map((v) => ({ v: v as string | Buffer | null, good: false }));
  const value = fc.oneof(good, good, bad);
  const step = fc.array(
    fc.record({ kind: fc.constantFrom('new', 'new', 'redeliver', 'reuse'), value, pick: fc.nat() }),
    { minLength: 1, maxLength: 25 },
  );

  it('holds for generated batch sequences (outcomes match the model, tables match the outcomes)', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 6 }), async (steps) => {
        const topic = `model.${run++}`;
        const sent: Array<{ offset: number; value: string | Buffer | null; timestamp: string }> = [];
        let nextOffset = 0;
        let expectedRows = 0;
        for (const batch of steps) {
          const records: ParsedRecord[] = [];
          const expected: RecordOutcome[] = [];
          const inBatch = new Set<number>();
          for (const { kind, value: generated, pick } of batch) {
            const { v } = generated;
            const fresh: RecordOutcome = generated.good ? 'journaled' : 'dead_lettered';
            const earlier = sent.filter((s) => !inBatch.has(s.offset));
            if (kind !== 'new' && earlier.length > 0) {
              const target = earlier[pick % earlier.length];
              inBatch.add(target.offset);
              if (kind === 'redeliver') {
                records.push(at(topic, 0, target.offset, target.value, target.timestamp));
                expected.push('redelivered');
              } else {
                // Same coordinates, different record (its timestamp differs even if the value does not).
                const timestamp = String(1800000000000 + sent.length);
                records.push(at(topic, 0, target.offset, v, timestamp));
                sent.push({ offset: target.offset, value: v, timestamp });
                expected.push(fresh);
                expectedRows += 1;
              }
              continue;
            }
            const offset = nextOffset++;
            inBatch.add(offset);
            const timestamp = '1700000000000';
            records.push(at(topic, 0, offset, v, timestamp));
            sent.push({ offset, value: v, timestamp });
            expected.push(fresh);
            expectedRows += 1;
          }
          const outcome = await appendBatch(pool, records);
          // Invariant 1: exactly the model's outcome for every record.
          expect(outcome.outcomes).toEqual(expected);
          // Invariant 3: the outcome accounts for every record.
          const journaled = outcome.outcomes.filter((o) => o === 'journaled').length;
          const dead = outcome.outcomes.filter((o) => o === 'dead_lettered').length;
          expect(journaled + dead + outcome.redelivered).toBe(records.length);
          expect(journaled).toBe(outcome.journaled.length);
          expect(dead).toBe(outcome.deadLetters.length);
        }
        // Nothing lost, nothing twice: every distinct record sent is stored exactly once, in one table or the other.
        expect((await count('event_journal', topic)) + (await count('event_dlq', topic))).toBe(expectedRows);
      }),
      { numRuns: 40 },
    );
  });
});

it('a dead letter Postgres refuses as written is stored as bytes with sanitised text, never retried forever', async () => {
  const value = Buffer.from('{"note":"a\\u0000b","tenant_id":"\\u0000"}');
  const outcome = await appendBatch(pool, [at('safe.form', 0, 0, value)]);
  expect(outcome.outcomes).toEqual(['dead_lettered']);
  const { rows } = await pool.query(
    "SELECT reason, payload, raw_value, raw_bytes, error FROM event_dlq WHERE topic = 'safe.form'",
  );
  expect(rows).toHaveLength(1);
  expect(rows[0]).toMatchObject({ payload: null, raw_value: null });
  expect((rows[0].raw_bytes as Buffer).equals(value)).toBe(true);
  expect(rows[0].error).toMatch(/stored as bytes only/);
  expect(rows[0].error).not.toContain('\u0000');
});

describe('rows journaled before content hashes (migration 007)', () => {
  const legacy = async (table: 'event_journal' | 'event_dlq', topic: string, offset: number, payload: string) => {
    if (table === 'event_journal') {
      await pool.query(
        `INSERT INTO event_journal (tenant_id, topic, payload, kafka_partition, kafka_offset) VALUES ('acme', $1, $2, 0, $3)`,
        [topic, payload, offset],
      );
    } else {
      await pool.query(
        `INSERT INTO event_dlq (topic, raw_value, error, reason, kafka_partition, kafka_offset)
         VALUES ($1, $2, 'Record value is not valid JSON', 'invalid_json', 0, $3)`,
        [topic, payload, offset],
      );
    }
  };

  it('a record equal to the legacy row is a redelivery; a different one is a coordinate reuse and is kept', async () => {
    await legacy('event_journal', 'legacy.j', 0, '{"tenant_id":"acme","n":1}');
    await legacy('event_journal', 'legacy.j', 1, '{"tenant_id":"acme","n":1}');
    await legacy('event_dlq', 'legacy.j', 2, 'not json');
    await legacy('event_dlq', 'legacy.j', 3, 'not json');
    const outcome = await appendBatch(pool, [
      at('legacy.j', 0, 0, '{"n": 1, "tenant_id": "acme"}'), // same as jsonb: redelivered
      at('legacy.j', 0, 1, '{"tenant_id":"acme","n":2}'), // different: reuse, journaled
      at('legacy.j', 0, 2, 'not json'), // same rejected value: redelivered
      at('legacy.j', 0, 3, 'still not json'), // different: reuse, dead-lettered
    ]);
    expect(outcome.outcomes).toEqual(['redelivered', 'journaled', 'redelivered', 'dead_lettered']);
    expect(outcome.reused.map((r) => r.offset)).toEqual(['1', '3']);
    expect(await count('event_journal', 'legacy.j')).toBe(3);
    expect(await count('event_dlq', 'legacy.j')).toBe(3);
  });
});

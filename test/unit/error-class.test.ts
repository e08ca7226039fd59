import fc from 'fast-check';
import { errorClassOf } from '../../journal/error-class';
import { DLQ_REASONS, REJECT_REASONS } from '../../journal/kinds';
import { safeDlqEntry } from '../../journal/outage';
import { parseRecord } from '../../journal/record';

// What varies between dead letters that failed the same way: numbers, ids, quoted values, offsets, partitions.
const number = fc.oneof(fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.bigInt());
const uuid = fc.uuid();
// Quoted values may hold anything but quotes and backslashes: a value holding its own quote mark, unescaped as V8
// and Postgres print them, cannot be told from the text around it.
const quoted = fc.string({ maxLength: 30 }).map((s) => s.replace(/["'`\\]/g, ''));
const partition = fc.tuple(fc.integer({ min: 2000, max: 2100 }), fc.integer({ min: 1, max: 12 }));

/** Error texts of one failure, as the sink words them, for any values. */
const FAILURES: Record<string, { reason: string; cls: string; error: fc.Arbitrary<string> }> = {
  check: {
    reason: 'db_error',
    cls: 'db_error:check_violation:bar_block',
    error: fc
      .tuple(partition, quoted)
      .map(
        ([[y, m]]) =>
          `Insert into event_journal failed: new row for relation "event_journal_p${y}_${String(m).padStart(2, '0')}" ` +
          'violates check constraint "bar_block" (SQLSTATE 23514)',
      ),
  },
  unique: {
    reason: 'db_error',
    cls: 'db_error:unique_violation:event_journal_p_pkey',
    error: fc
      .tuple(partition, fc.nat())
      .map(
        ([[y, m], id]) =>
          `Insert into event_journal failed: duplicate key value violates unique constraint "event_journal_p${y}_${m}_pkey" ` +
          `Key (id)=(${id}) already exists. (SQLSTATE 23505)`,
      ),
  },
  notNull: {
    reason: 'db_error',
    cls: 'db_error:not_null_violation',
    error: fc.constant('Insert into event_journal failed: null value in column violates not-null (SQLSTATE 23502)'),
  },
  jsonb: {
    reason: 'db_error',
    cls: 'db_error:untranslatable_character',
    error: fc
      .tuple(quoted, fc.nat())
      .map(
        ([v, n]) =>
          `Insert into event_journal failed: unsupported Unicode escape sequence "${v}" at ${n} (SQLSTATE 22P05)`,
      ),
  },
  json: {
    reason: 'invalid_json',
    cls: 'invalid_json',
    error: fc
      .tuple(quoted, fc.nat())
      .map(([v, n]) => `Record value is not valid JSON: Unexpected token '${v}', "${v}" at position ${n}`),
  },
  large: {
    reason: 'too_large',
    cls: 'too_large',
    error: fc
      .tuple(fc.nat(), fc.nat())
      .map(([a, b]) => `Record value is ${a} bytes, larger than INGEST_MAX_EVENT_BYTES=${b}`),
  },
  parse: {
    reason: 'parse_error',
    cls: 'parse_error:the_record_could_not_be_parsed_cannot_read_properties_of_undefined_reading_at_offset_id',
    error: fc
      .tuple(quoted, number, uuid)
      .map(
        ([field, n, id]) =>
          `The record could not be parsed: Cannot read properties of undefined (reading '${field}') at offset ${n} id ${id}`,
      ),
  },
  legacy: {
    reason: 'unknown',
    cls: 'unknown:lead_rejected_by_for_tenant',
    error: fc
      .tuple(uuid, quoted, number)
      .map(([id, tenant, n]) => `lead ${id} rejected by "${tenant}" for tenant ${n}`),
  },
};

describe('errorClassOf', () => {
  it.each(Object.entries(FAILURES))('%s: one class whatever the numbers, ids and quoted values', (_, failure) => {
    fc.assert(
      fc.property(failure.error, failure.error, (a, b) => {
        expect(errorClassOf(failure.reason, a)).toBe(failure.cls);
        expect(errorClassOf(failure.reason, b)).toBe(errorClassOf(failure.reason, a));
      }),
      { numRuns: 300 },
    );
  });

  it('differs across reasons, whatever the messages', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...DLQ_REASONS),
        fc.constantFrom(...DLQ_REASONS),
        fc.string(),
        fc.string(),
        (r1, r2, e1, e2) => {
          fc.pre(r1 !== r2);
          const [a, b] = [errorClassOf(r1, e1), errorClassOf(r2, e2)];
          expect(a).not.toBe(b);
          expect(a.split(':')[0]).toBe(r1);
          expect(a.length).toBeLessThanOrEqual(200);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('keeps different failures of one reason apart', () => {
    const classes = new Set(
      Object.values(FAILURES).map((f) => errorClassOf(f.reason, fc.sample(f.error, { numRuns: 1, seed: 1 })[0])),
    );
    expect(classes.size).toBe(Object.keys(FAILURES).length);
  });

  it('gives every record the real parser rejects the class of its reason (templated reasons)', () => {
    const value = fc.oneof(
      fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
      fc.json().map((j) => Buffer.from(j)),
      fc.jsonValue().map((v) => Buffer.from(JSON.stringify({ v }))),
      fc.string().map((s) => Buffer.from(`{"tenant_id": "acme", "x": ${s}`)),
    );
    fc.assert(
      fc.property(value, fc.nat(), fc.nat({ max: 11 }), (bytes, offset, p) => {
        const parsed = parseRecord(
          { topic: 't', partition: p, offset: String(offset), key: null, value: bytes },
          { maxBytes: 100, lineageKey: Buffer.alloc(32, 1) },
        );
        if (parsed.ok) return;
        expect(REJECT_REASONS).toContain(parsed.reason);
        expect(errorClassOf(parsed.reason, parsed.dlq.error)).toBe(parsed.reason);
      }),
      { numRuns: 500 },
    );
  });

  it('is the same for a dead letter stored in its safe form (bytes only)', () => {
    fc.assert(
      fc.property(FAILURES.parse.error, quoted, (error, why) => {
        const entry = {
          topic: 't',
          partition: 0,
          offset: '1',
          key: null,
          keyBytes: null,
          headersJson: null,
          timestamp: null,
          contentHash: null,
          tenantId: null,
          payloadJson: null,
          rawValue: null,
          rawBytes: null,
          error,
          reason: 'parse_error',
        };
        const safe = safeDlqEntry(entry, new Error(`invalid byte sequence ${why} 0x00`));
        expect(errorClassOf(safe.reason, safe.error)).toBe(errorClassOf(entry.reason, entry.error));
      }),
    );
  });
});

import fc from 'fast-check';
import { gunzipSync } from 'node:zlib';
import { listSegments, writeSegment, type ArchiveRow, type ArchiveStore } from '../../archive';

// Numbers no double can hold: a reader that parsed the payload would change their digits.
const bigNumber = fc
  .tuple(
    fc.boolean(),
    fc.stringMatching(/^[1-9]\d{16,40}$/),
    fc.option(fc.stringMatching(/^\d{1,25}$/)),
    fc.option(fc.stringMatching(/^[eE][+-]?[1-9]\d{0,2}$/)),
  )
  .map(
    ([negative, whole, fraction, exponent]) =>
      `${negative ? '-' : ''}${whole}${fraction ? `.${fraction}` : ''}${exponent ?? ''}`,
  );

const text = fc.string({ unit: 'binary', maxLength: 20 });

/** JSON text (as jsonb prints it, or otherwise spaced) with big numbers, any Unicode, nulls and nesting. */
const jsonText = fc.letrec<{ value: string; object: string }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    bigNumber,
    fc.constantFrom('null', 'true', 'false', '0', '-0', '1.50', '1e400'),
    text.map((s) => JSON.stringify(s)),
    fc.array(tie('value'), { maxLength: 4 }).map((items) => `[${items.join(', ')}]`),
    tie('object'),
  ),
  object: fc
    .array(fc.tuple(text, tie('value')), { maxLength: 5 })
    .map((entries) => `{${entries.map(([k, v]) => `${JSON.stringify(k)}: ${v}`).join(', ')}}`),
})).object;

const micros = (date: Date, extra: number) => date.toISOString().replace('Z', `${String(extra).padStart(3, '0')}Z`);
const time = fc
  .tuple(fc.date({ min: new Date('2020-01-01'), max: new Date('2030-01-01'), noInvalidDate: true }), fc.nat(999))
  .map(([date, extra]) => micros(date, extra));
const bytes = (maxLength: number) => fc.uint8Array({ maxLength }).map((b) => Buffer.from(b).toString('base64'));
const orNull = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: null });

/** A journal row in archive form, every column exercised. Ids are given afterwards (withIds). */
export const archiveRow: fc.Arbitrary<Omit<ArchiveRow, 'id'>> = fc.record({
  tenant_id: fc.string({ unit: 'binary', minLength: 1, maxLength: 12 }),
  topic: fc.stringMatching(/^[a-z][a-z.]{0,29}$/),
  payload: jsonText,
  received_at: time,
  kafka_partition: orNull(fc.nat(1000)),
  kafka_offset: orNull(fc.bigInt({ min: 0n, max: 2n ** 63n - 1n }).map(String)),
  kafka_key: orNull(text),
  kafka_key_bytes: orNull(bytes(40)),
  kafka_headers: orNull(
    fc.array(fc.tuple(text, orNull(bytes(20))), { maxLength: 3 }).map((headers) => JSON.stringify(headers)),
  ),
  kafka_timestamp: orNull(time),
  content_hash: orNull(fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b).toString('hex'))),
  replay_count: fc.nat(5),
  replay_source: orNull(fc.constantFrom('operator_api', 'batch', 'range', 'automated')),
});

/** Rows numbered from firstId up, in id order as the journal reads them. */
export function withIds(rows: Array<Omit<ArchiveRow, 'id'>>, firstId = 1): ArchiveRow[] {
  return rows.map((row, i) => ({ id: firstId + i, ...row }));
}

/** A plain row with the given payload, for tests that care about one column. */
export function plainRow(id: number, payload: string, overrides: Partial<ArchiveRow> = {}): ArchiveRow {
  return {
    id,
    tenant_id: 'acme',
    topic: 'apexflow.leads.created',
    payload,
    received_at: micros(new Date(Date.UTC(2026, 0, 1, 0, 0, 0, id % 1000)), id % 1000),
    kafka_partition: 0,
    kafka_offset: String(id),
    kafka_key: `key-${id}`,
    kafka_key_bytes: Buffer.from(`key-${id}`).toString('base64'),
    kafka_headers: '[]',
    kafka_timestamp: null,
    content_hash: null,
    replay_count: 0,
    replay_source: null,
    ...overrides,
  };
}

/** Archives `rows` as segment `segment` of event_journal (all of them expected), as the archive step writes one. */
export async function writeJournalSegment(store: ArchiveStore, segment: string, rows: ArchiveRow[]): Promise<void> {
  await writeSegment(store, { segment, table: 'event_journal', rows, expectedRows: rows.length });
}

/** Every row an async iterable yields. */
export async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

/** The whole object, in memory (test-sized objects only). */
export async function readObject(store: ArchiveStore, key: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of await store.get(key)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Every object of the store as text, gzip files decompressed (what a grep of the whole archive would see). */
export async function storeContents(store: ArchiveStore): Promise<Map<string, string>> {
  const contents = new Map<string, string>();
  for await (const object of store.list('')) {
    const raw = await readObject(store, object.key);
    contents.set(object.key, (object.key.endsWith('.gz') ? gunzipSync(raw) : raw).toString('utf8'));
  }
  return contents;
}

/**
 * Objects under `prefix` (segments/...) that are neither a segment's manifest nor the file its manifest points at:
 * what a rewrite or an archive step left behind.
 */
export async function strayObjects(store: ArchiveStore, prefix: string): Promise<string[]> {
  const accounted = new Set<string>();
  for (const m of await listSegments(store)) {
    accounted.add(`segments/${m.segment}/manifest.json`);
    accounted.add(m.file.key);
  }
  const stray: string[] = [];
  for await (const object of store.list(prefix)) if (!accounted.has(object.key)) stray.push(object.key);
  return stray;
}

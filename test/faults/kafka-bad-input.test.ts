import fc from 'fast-check';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';

let h: SinkHarness;
const MAX_BYTES = 64 * 1024;

beforeAll(async () => {
  h = await createSinkHarness('badinput', { INGEST_MAX_EVENT_BYTES: String(MAX_BYTES) });
  await h.startIngest();
});
afterAll(() => h.close());

interface Outcome {
  where: 'journal' | 'dlq';
  reason?: string;
  error?: string;
}

/** Where each offset of partition 0 of the leads topic ended: exactly one of journal or DLQ, or missing. */
async function outcomes(): Promise<Map<number, Outcome[]>> {
  const journal = await h.pool.query<{ kafka_offset: number }>(
    'SELECT kafka_offset FROM event_journal WHERE topic = $1 AND kafka_partition = 0',
    [h.topics.leads],
  );
  const dlq = await h.pool.query<{ kafka_offset: number; reason: string; error: string }>(
    'SELECT kafka_offset, reason, error FROM event_dlq WHERE topic = $1 AND kafka_partition = 0',
    [h.topics.leads],
  );
  const map = new Map<number, Outcome[]>();
  const add = (offset: number, o: Outcome) => map.set(offset, [...(map.get(offset) ?? []), o]);
  journal.rows.forEach((r) => add(r.kafka_offset, { where: 'journal' }));
  dlq.rows.forEach((r) => add(r.kafka_offset, { where: 'dlq', reason: r.reason, error: r.error }));
  return map;
}

let sent = 0;
/** Sends one record to partition 0 and returns its offset. */
async function send(value: Buffer | string | null, headers?: Record<string, string>): Promise<number> {
  const [meta] = await h.upstream.send({
    topic: h.topics.leads,
    acks: -1,
    messages: [{ partition: 0, value, headers }],
  });
  sent += 1;
  return Number(meta.baseOffset);
}

const nested = (depth: number) =>
  `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`.replace(/^\{/, '{"tenant_id":"deep","a":');

const TABLE: [string, Buffer | string | null, Record<string, string> | undefined, string | RegExp][] = [
  ['random bytes', Buffer.from([0x00, 0xff, 0x13, 0x37, 0xc0, 0xaf, 0x80]), undefined, 'invalid_utf8'],
  [
    'a value over INGEST_MAX_EVENT_BYTES',
    JSON.stringify({ tenant_id: 'acme', blob: 'x'.repeat(MAX_BYTES * 3) }),
    undefined,
    'too_large',
  ],
  ['deeply nested JSON (5,000 levels)', nested(5000), undefined, /journal|db_error|invalid_json/],
  ['JSON that is an array', '[{"tenant_id":"acme"}]', undefined, 'not_object'],
  ['JSON that is a string', '"acme"', undefined, 'not_object'],
  ['JSON null', 'null', undefined, 'not_object'],
  ['an object without tenant', '{"name":"nobody"}', undefined, 'missing_tenant'],
  ['an empty tenant', '{"tenant_id":""}', undefined, 'missing_tenant'],
  [
    'invalid UTF-8 inside JSON',
    Buffer.concat([Buffer.from('{"tenant_id":"acme","name":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]),
    undefined,
    'invalid_utf8',
  ],
  ['a tombstone (null value)', null, undefined, 'empty_value'],
  ['headers only (tenant header, no value)', null, { 'x-tenant-id': 'acme', 'x-source': 'gateway' }, 'empty_value'],
  ['a \\u0000 escape jsonb refuses', '{"tenant_id":"acme","name":"nul\\u0000byte"}', undefined, 'db_error'],
  ['an empty string', '', undefined, 'empty_value'],
  ['a lone brace', '{', undefined, 'invalid_json'],
];

it.each(TABLE)(
  '%s ends journaled or in the DLQ with its reason, and the consumer stays up',
  async (_name, value, headers, expected) => {
    const offset = await send(value, headers);
    const [outcome] = await eventually(async () => (await outcomes()).get(offset), `offset ${offset} to land`);
    const label = outcome.where === 'journal' ? 'journal' : outcome.reason!;
    if (expected instanceof RegExp) expect(label).toMatch(expected);
    else expect(label).toBe(expected);
    if (outcome.where === 'dlq') expect(outcome.error!.length).toBeGreaterThan(15);
    expect(h.ingest?.isPaused()).toBe(false);
  },
);

it('fuzz: 300 random records each land exactly once, journaled or dead-lettered, and a good event still gets through', async () => {
  const record = fc.oneof(
    fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
    fc.json().map((j) => j),
    fc.jsonValue().map((v) => JSON.stringify(v)),
    fc
      .record({ tenant_id: fc.oneof(fc.string(), fc.constant('acme')), name: fc.string() })
      .map((o) => JSON.stringify(o)),
    fc.string({ unit: 'binary' }),
    fc.constant(null),
  );
  const values = fc.sample(record, { numRuns: 300, seed: 4242 });
  const first = await send(values[0]);
  for (const v of values.slice(1)) await send(v);
  const good = await send(JSON.stringify({ tenant_id: 'acme', name: 'after the fuzz' }));
  await eventually(async () => (await outcomes()).has(good), 'the good event after the fuzz', 60_000);
  const map = await outcomes();
  for (let offset = first; offset <= good; offset++) {
    const landed = map.get(offset);
    expect({ offset, count: landed?.length }).toEqual({ offset, count: 1 });
  }
  expect(map.get(good)).toEqual([{ where: 'journal' }]);
  expect(h.ingest?.isPaused()).toBe(false);
  expect(sent).toBeGreaterThan(300);
});

import fc from 'fast-check';
import type { IHeaders } from 'kafkajs';

/**
 * Generators of hostile Kafka records for the integrity tests (docs/integrity.md, invariant 1): the value, key and
 * header values range over arbitrary bytes and over valid JSON carrying whatever Postgres or the parser may choke on.
 * JSON is built as text, not with JSON.stringify of a value, so that it can hold what no JS value prints as: 1e400,
 * -0, 30-digit integers, duplicate keys, 10,000 levels of nesting.
 */

/** A generated record: which of the test's topics and partitions it goes to, and a label naming the family. */
export interface HostileRecord {
  topic: 0 | 1;
  partition: number;
  kind: string;
  key: Buffer | null;
  value: Buffer | null;
  headers?: IHeaders;
}

const TENANT_FIELDS = ['tenant_id', 'tenantId', 'TenantId'];
const LINEAGE_HEADERS = [
  'x-replay-id',
  'x-replayed-from-event-id',
  'x-replay-count',
  'x-replay-source',
  'x-replay-proof',
];

/** Strings that break things: NUL, lone surrogates (JSON.stringify writes them as \u0000 and \ud800 escapes), BOM… */
const nastyString = fc.oneof(
  fc.constantFrom(
    '',
    ' ',
    '\t\n\r',
    '\u0000',
    'a\u0000b',
    '\u0000acme',
    '\ud800',
    'x\udfffy',
    '\udc00\ud800',
    '\ud83d\ude00',
    '\u2028\u2029',
    '\ufeff',
    '\u202eacme',
    '"\\/',
    'acme',
    ' acme ',
    'é',
    '\u0001\u001f\u007f',
  ),
  fc.string({ unit: 'binary', maxLength: 12 }),
  fc.string({ unit: fc.constantFrom('\u0000', '\ud800', '\udc00', '\\', '"', 'a', '\u00e9', '\ud83d'), maxLength: 10 }),
);

/** Numbers as JSON text, including what no double can hold and what numeric overflows on. */
const numberText = fc.oneof(
  { weight: 4, arbitrary: fc.integer().map(String) },
  fc.constantFrom(
    '1e400',
    '-1e400',
    '1e-400',
    '-0',
    '-0.0',
    '0e0',
    '1.50',
    '1E+2',
    '123456789012345678901234567890',
    '-123456789012345678901234567890',
    '9007199254740993',
    '0.000000000000000000000000000001',
    '1e100000',
    '1e1000000',
    '-1e-1000000',
  ),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => JSON.stringify(d)),
  fc.bigInt({ min: -(10n ** 40n), max: 10n ** 40n }).map(String),
);

const stringText = fc.oneof(
  { weight: 6, arbitrary: fc.string({ maxLength: 16 }).map((s) => JSON.stringify(s)) },
  { weight: 2, arbitrary: nastyString.map((s) => JSON.stringify(s)) },
  fc.constantFrom('"\\u0000"', '"a\\u0000b"', '"\\ud800"', '"\\udfff\\ud800"', '"\\uD800x"', '"\\u0000\\ud800"'),
);

const keyText = fc.oneof(
  { weight: 3, arbitrary: stringText },
  { weight: 1, arbitrary: fc.constantFrom(...TENANT_FIELDS, '_replay_id', 'event_type', 'type').map((k) => `"${k}"`) },
);

/** Any JSON document, as text. */
const jsonText: fc.Arbitrary<string> = fc.letrec<{ value: string; leaf: string; array: string; object: string }>(
  (tie) => ({
    value: fc.oneof({ depthSize: 'small' }, tie('leaf'), tie('array'), tie('object')),
    leaf: fc.oneof(numberText, stringText, fc.constantFrom('true', 'false', 'null')),
    array: fc.array(tie('value'), { maxLength: 4 }).map((xs) => `[${xs.join(',')}]`),
    object: fc
      .array(fc.tuple(keyText, tie('value')), { maxLength: 5 })
      .map((kvs) => `{${kvs.map(([k, v]) => `${k}:${v}`).join(',')}}`),
  }),
).value;

/** A tenant field as `"name":value` text: good tenants, NUL, whitespace, numbers, objects, huge numbers. */
const tenantField = fc.tuple(
  fc.constantFrom(...TENANT_FIELDS),
  fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom('"acme"', '"globex"', '" initech "') },
    { weight: 4, arbitrary: stringText },
    { weight: 2, arbitrary: numberText },
    { weight: 1, arbitrary: fc.constantFrom('{}', '[]', 'null', 'true', '{"id":"acme"}', '["acme"]') },
    { weight: 1, arbitrary: fc.integer({ min: 1, max: 20_000 }).map((n) => JSON.stringify('t'.repeat(n))) },
  ),
);

/**
 * Lineage fields without a proof. _replay_id and _replayed_from_event_id come from a small set, so that records of
 * one run collide with each other the way a forged record collides with a genuine replay.
 */
const lineageFields = fc.record(
  {
    _replay_id: fc.constantFrom('"r-1"', '"r-2"', '"r-\\u0000"', '1', 'null', '{}', '"\\ud800"'),
    _replayed_from_event_id: fc.constantFrom('1', '2', '"1"', '"9007199254740993"', '-1', '0', '1e400', '"abc"', '[]'),
    _replay_count: fc.constantFrom('1', '0', '-1', '2.5', '"3"', '1e400', '99999999999999999999'),
    _replay_source: stringText,
  },
  { requiredKeys: [] },
);

/** A JSON object text with (maybe) a tenant, (maybe) forged lineage, and anything else, fields in any order. */
const objectText = fc
  .tuple(
    fc.option(tenantField, { freq: 4 }),
    fc.option(lineageFields, { freq: 3 }),
    fc.array(fc.tuple(keyText, jsonText), { maxLength: 6 }),
    fc.constantFrom('', ' ', '\n\t ', '\r\n'),
  )
  .chain(([tenant, lineage, rest, ws]) => {
    const fields = [
      ...(tenant ? [`"${tenant[0]}":${tenant[1]}`] : []),
      ...Object.entries(lineage ?? {}).map(([k, v]) => `"${k}":${v}`),
      ...rest.map(([k, v]) => `${k}:${v}`),
    ];
    return fc.shuffledSubarray(fields, { minLength: fields.length }).map((f) => `${ws}{${f.join(`,${ws}`)}}${ws}`);
  });

const utf8 = (text: string) => Buffer.from(text, 'utf8');

const INVALID_UTF8 = [[0xff], [0xc3, 0x28], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0x80], [0xe2]];

/** Valid-looking JSON with bytes spliced into a string: invalid UTF-8, or a raw (unescaped) NUL. */
const splicedBytes = fc
  .tuple(fc.constantFrom(...INVALID_UTF8, [0x00], [0x61, 0x00, 0x62]), fc.constantFrom('tenant_id', 'name'))
  .map(([bytes, field]) => Buffer.concat([utf8(`{"tenant_id":"acme","${field}":"x`), Buffer.from(bytes), utf8('y"}')]));

/** Objects and arrays nested 1,000 to 10,000 deep, with a good tenant at the top. */
const deepText = fc
  .tuple(fc.integer({ min: 1000, max: 10_000 }), fc.constantFrom('{"a":', '['), fc.constantFrom('1', '"\\u0000"', '{}'))
  .map(([depth, open, leaf]) => {
    const close = open === '[' ? ']' : '}';
    return `{"tenant_id":"deep","d":${open.repeat(depth)}${leaf}${close.repeat(depth)}}`;
  });

/** A valid event whose value is exactly `bytes` long (the limit, one under, one over), padded with ASCII or é. */
const sizedText = (maxBytes: number) =>
  fc.tuple(fc.constantFrom(-1, 0, 1, maxBytes), fc.constantFrom('x', 'é')).map(([delta, pad]) => {
    const target = delta === maxBytes ? maxBytes * 2 : maxBytes + delta;
    const shell = `{"tenant_id":"acme","pad":""}`;
    const room = target - Buffer.byteLength(shell);
    const unit = Buffer.byteLength(pad);
    const filler = pad.repeat(Math.floor(room / unit)) + 'x'.repeat(room % unit);
    return `{"tenant_id":"acme","pad":"${filler}"}`;
  });

/** Every family of value, weighted so that most records are JSON objects (the parser's and Postgres' real input). */
const valueOf = (maxBytes: number): fc.Arbitrary<{ kind: string; value: Buffer | null }> =>
  fc.oneof(
    { weight: 40, arbitrary: objectText.map((t) => ({ kind: 'object', value: utf8(t) })) },
    { weight: 8, arbitrary: jsonText.map((t) => ({ kind: 'json', value: utf8(t) })) },
    {
      weight: 6,
      arbitrary: fc.jsonValue({ stringUnit: 'binary', maxDepth: 3 }).map((v) => ({
        kind: 'json-value',
        value: utf8(JSON.stringify({ tenant_id: 'acme', data: v })),
      })),
    },
    { weight: 6, arbitrary: fc.uint8Array({ maxLength: 300 }).map((b) => ({ kind: 'bytes', value: Buffer.from(b) })) },
    { weight: 6, arbitrary: splicedBytes.map((b) => ({ kind: 'spliced-bytes', value: b })) },
    {
      weight: 3,
      arbitrary: fc
        .tuple(objectText, fc.nat())
        .map(([t, n]) => ({ kind: 'truncated', value: utf8(t).subarray(0, n % (t.length + 1)) })),
    },
    { weight: 2, arbitrary: deepText.map((t) => ({ kind: 'deep', value: utf8(t) })) },
    { weight: 2, arbitrary: sizedText(maxBytes).map((t) => ({ kind: 'size-limit', value: utf8(t) })) },
    { weight: 2, arbitrary: fc.constant({ kind: 'tombstone', value: null }) },
    { weight: 2, arbitrary: fc.constant({ kind: 'empty', value: Buffer.alloc(0) }) },
  );

/** Header and key bytes: arbitrary bytes, text with NUL or lone surrogates (as UTF-8 encodes them), invalid UTF-8. */
const bytesField = fc.oneof(
  fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b)),
  nastyString.map(utf8),
  fc.constantFrom(...INVALID_UTF8, [0x00], [0x61, 0x00, 0x62], []).map((b) => Buffer.from(b)),
  fc.constantFrom('acme', 'globex').map(utf8),
);

const headerName = fc.oneof(
  { weight: 100, arbitrary: fc.constantFrom('x-tenant-id', 'x-source', ...LINEAGE_HEADERS) },
  { weight: 100, arbitrary: fc.string({ unit: 'binary', maxLength: 8 }) },
  // Names a plain object already has (kafkajs gathers a record's headers into one): a few per run.
  { weight: 1, arbitrary: fc.constantFrom('toString', 'constructor', '__proto__', 'hasOwnProperty', 'valueOf') },
);

const headers: fc.Arbitrary<IHeaders | undefined> = fc
  .option(
    fc.dictionary(headerName, fc.oneof(bytesField, fc.array(bytesField, { minLength: 2, maxLength: 3 })), {
      maxKeys: 4,
    }),
    { freq: 2 },
  )
  .map((h) => h ?? undefined);

/** One hostile record, to one of two topics (0 or 1) and one of `partitions` partitions. */
export function hostileRecord(maxBytes: number, partitions: number): fc.Arbitrary<HostileRecord> {
  return fc
    .record({
      topic: fc.constantFrom<0 | 1>(0, 1),
      partition: fc.integer({ min: 0, max: partitions - 1 }),
      key: fc.option(bytesField, { freq: 3 }),
      value: valueOf(maxBytes),
      headers,
    })
    .map(({ value, ...rest }) => ({ ...rest, kind: value.kind, value: value.value }));
}

/** A record as a short, reproducible description for a failure message. */
export function describeRecord(record: HostileRecord): string {
  const bytes = (b: Buffer | null, max: number) => {
    if (b === null) return 'null';
    let text: string | undefined;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(b);
    } catch {
      // not UTF-8: shown as hex
    }
    const shown = text !== undefined ? JSON.stringify(text.slice(0, max)) : `hex:${b.subarray(0, max).toString('hex')}`;
    return b.length > max ? `${shown}…(${b.length} bytes)` : shown;
  };
  const headerText = Object.entries(record.headers ?? {})
    .map(([k, v]) => `${JSON.stringify(k)}: ${[v].flat().map((x) => bytes(Buffer.from(x as Buffer), 60))}`)
    .join(', ');
  return `${record.kind} key=${bytes(record.key, 60)} value=${bytes(record.value, 400)} headers={${headerText}}`;
}

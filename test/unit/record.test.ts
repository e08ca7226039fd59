import { headerList } from '../../journal/headers';
import { lineageProof } from '../../journal/lineage';
import {
  contentHash,
  eventTypeOf,
  parseRecord,
  payloadTenant,
  textOrBase64,
  type KafkaRecord,
  type ParseOptions,
} from '../../journal/record';

const lineageKey = Buffer.alloc(32, 1);
const options = (maxBytes = 1024): ParseOptions => ({ maxBytes, lineageKey });
const TIMESTAMP = String(Date.UTC(2026, 0, 2, 3, 4, 5));

const record = (value: Buffer | string | null, extra: Partial<KafkaRecord> = {}): KafkaRecord => ({
  topic: 'apexflow.leads.created',
  partition: 1,
  offset: '42',
  key: Buffer.from('acme:1'),
  value: typeof value === 'string' ? Buffer.from(value) : value,
  timestamp: TIMESTAMP,
  ...extra,
});

/** A record whose lineage carries a valid proof, as this service's replays send it. */
const replayed = (payload: object): KafkaRecord => {
  const value = JSON.stringify(payload);
  return record(value, { headers: { 'x-replay-proof': Buffer.from(lineageProof(lineageKey, value)) } });
};

describe('parseRecord', () => {
  it('accepts a lead event and keeps its Kafka coordinates, key, timestamp, headers and original JSON', () => {
    const json = '{"tenant_id":"acme","name":"Ada","email":"ada@example.com","source":"web"}';
    const headers = { 'x-trace': Buffer.from('t-1') };
    const parsed = parseRecord(record(json, { headers }), options());
    expect(parsed).toEqual({
      ok: true,
      eventType: 'lead.created',
      valueBytes: Buffer.from(json),
      lineage: null,
      entry: {
        tenantId: 'acme',
        topic: 'apexflow.leads.created',
        payloadJson: json,
        partition: 1,
        offset: '42',
        key: 'acme:1',
        keyBytes: Buffer.from('acme:1'),
        headersJson: JSON.stringify([
          [Buffer.from('x-trace').toString('base64'), Buffer.from('t-1').toString('base64')],
        ]),
        timestamp: new Date(Number(TIMESTAMP)),
        contentHash: contentHash(Buffer.from('acme:1'), Buffer.from(json), TIMESTAMP, headerList(headers)),
        replayCount: 0,
        replaySource: null,
      },
    });
  });

  it('a record without key, headers or timestamp keeps them as null', () => {
    const json = '{"tenant_id":"acme"}';
    const parsed = parseRecord(record(json, { key: null, timestamp: undefined }), options());
    expect(parsed.ok && parsed.entry).toMatchObject({ key: null, keyBytes: null, headersJson: null, timestamp: null });
  });

  describe('content hash', () => {
    const hashOf = (r: KafkaRecord) => {
      const parsed = parseRecord(r, options());
      return parsed.ok ? parsed.entry.contentHash : parsed.dlq.contentHash;
    };
    const json = '{"tenant_id":"acme","n":1}';

    it('is a SHA-256, equal for the same record consumed twice', () => {
      const hash = hashOf(record(json));
      expect(Buffer.isBuffer(hash)).toBe(true);
      expect(hash).toHaveLength(32);
      expect(hashOf(record(json))).toEqual(hash);
      // The coordinates are not part of the record's content.
      expect(hashOf(record(json, { offset: '43', partition: 2 }))).toEqual(hash);
    });

    it.each<[string, Partial<KafkaRecord>]>([
      ['value', { value: Buffer.from('{"tenant_id":"acme","n":2}') }],
      ['key', { key: Buffer.from('acme:2') }],
      ['missing key', { key: null }],
      ['empty key', { key: Buffer.alloc(0) }],
      ['timestamp', { timestamp: String(Number(TIMESTAMP) + 1) }],
      ['headers', { headers: { 'x-trace': Buffer.from('t') } }],
    ])('differs when the %s differs', (_, change) => {
      expect(hashOf(record(json, change))).not.toEqual(hashOf(record(json)));
    });

    it('cannot be forged by moving bytes between parts (length framing)', () => {
      const a = contentHash(Buffer.from('ab'), Buffer.from('c'), null, []);
      const b = contentHash(Buffer.from('a'), Buffer.from('bc'), null, []);
      expect(a).not.toEqual(b);
    });

    it('is kept on dead letters too', () => {
      const parsed = parseRecord(record('not json'), options());
      expect(!parsed.ok && parsed.dlq.contentHash).toEqual(
        contentHash(Buffer.from('acme:1'), Buffer.from('not json'), TIMESTAMP, []),
      );
    });
  });

  it.each([
    [{ tenant_id: 'acme' }, 'acme'],
    [{ tenantId: 'globex' }, 'globex'],
    [{ TenantId: '00000000-0000-0000-0000-000000000001' }, '00000000-0000-0000-0000-000000000001'],
    [{ tenant_id: '  padded  ' }, 'padded'],
    [{ tenant_id: 7 }, '7'],
    [{ tenant_id: '', tenantId: 'second-choice' }, 'second-choice'],
  ])('finds the tenant in %j', (payload, tenant) => {
    expect(payloadTenant(payload)).toBe(tenant);
  });

  it('falls back to the x-tenant-id header when the payload has no tenant', () => {
    const parsed = parseRecord(
      record('{"name":"Ada"}', { headers: { 'x-tenant-id': Buffer.from('initech') } }),
      options(),
    );
    expect(parsed.ok && parsed.entry.tenantId).toBe('initech');
  });

  it.each([
    [null, 'empty_value', /no value/],
    ['', 'empty_value', /no value/],
    ['{"tenant_id": "acme"', 'invalid_json', /not valid JSON/],
    ['[1,2,3]', 'not_object', /JSON an array; expected a JSON object/],
    ['"just a string"', 'not_object', /JSON a string/],
    ['null', 'not_object', /JSON null/],
    ['42', 'not_object', /JSON a number/],
    [
      '{"name":"no tenant"}',
      'missing_tenant',
      /no tenant: expected a non-empty tenant_id, tenantId, TenantId field or an x-tenant-id header/,
    ],
    ['{"tenant_id":"   "}', 'missing_tenant', /no tenant/],
    ['{"tenant_id":"ac\\u0000me"}', 'invalid_tenant', /tenant is not usable as an id/],
    ['{"tenant_id":"ac\\tme"}', 'invalid_tenant', /no control characters/],
    [JSON.stringify({ tenant_id: 'x'.repeat(201) }), 'invalid_tenant', /at most 200 characters/],
  ])('rejects %j as %s with a precise error', (value, reason, error) => {
    const parsed = parseRecord(record(value), options());
    expect(parsed.ok).toBe(false);
    if (parsed.ok) return;
    expect(parsed.reason).toBe(reason);
    expect(parsed.dlq.reason).toBe(reason);
    expect(parsed.dlq.error).toMatch(error);
    expect(parsed.dlq).toMatchObject({
      topic: 'apexflow.leads.created',
      partition: 1,
      offset: '42',
      key: 'acme:1',
      keyBytes: Buffer.from('acme:1'),
      timestamp: new Date(Number(TIMESTAMP)),
      rawBytes: value === null ? null : Buffer.from(value),
    });
  });

  it('rejects a tenant with a control character given in the x-tenant-id header, and keeps no tenant', () => {
    const parsed = parseRecord(
      record('{"name":"Ada"}', { headers: { 'x-tenant-id': Buffer.from('init\u0007ech') } }),
      options(),
    );
    expect(!parsed.ok && parsed.reason).toBe('invalid_tenant');
    expect(!parsed.ok && parsed.dlq.tenantId).toBeNull();
    expect(!parsed.ok && parsed.dlq.payloadJson).toBe('{"name":"Ada"}');
  });

  it('sanitises a JSON.parse error that quotes a NUL, so the DLQ error fits Postgres text', () => {
    const value = Buffer.from('{"tenant_id":\u0000}');
    // The parser's own message quotes the NUL it tripped on.
    expect(() => JSON.parse(value.toString())).toThrow(
      expect.objectContaining({ message: expect.stringContaining('\u0000') }),
    );
    const parsed = parseRecord(record(value), options());
    expect(parsed.ok).toBe(false);
    if (parsed.ok) return;
    expect(parsed.reason).toBe('invalid_json');
    expect(parsed.dlq.error).toMatch(/^Record value is not valid JSON: /);
    expect(parsed.dlq.error).not.toContain('\u0000');
    expect(parsed.dlq.error).toContain('\ufffd');
    // The record itself is kept exactly.
    expect(parsed.dlq.rawBytes).toEqual(value);
  });

  it('keeps the raw value of a record that is not JSON', () => {
    const parsed = parseRecord(record('not json at all'), options());
    expect(!parsed.ok && parsed.dlq.rawValue).toBe('not json at all');
    expect(!parsed.ok && parsed.dlq.rawBytes).toEqual(Buffer.from('not json at all'));
  });

  it('keeps the payload (as JSON) of an event without tenant so it can be fixed and retried', () => {
    const parsed = parseRecord(record('{"name":"Ada"}'), options());
    expect(!parsed.ok && parsed.dlq.payloadJson).toBe('{"name":"Ada"}');
  });

  it('rejects a value larger than the configured size, naming the limit', () => {
    const parsed = parseRecord(record(JSON.stringify({ tenant_id: 'acme', blob: 'x'.repeat(200) })), options(100));
    expect(!parsed.ok && parsed.reason).toBe('too_large');
    expect(!parsed.ok && parsed.dlq.error).toMatch(/larger than INGEST_MAX_EVENT_BYTES=100/);
  });

  it('stores invalid UTF-8 as base64 so no byte is lost', () => {
    const bytes = Buffer.from([0x7b, 0xff, 0xfe, 0x7d]);
    const parsed = parseRecord(record(bytes), options());
    expect(!parsed.ok && parsed.reason).toBe('invalid_utf8');
    expect(!parsed.ok && parsed.dlq.rawValue).toBe(`base64:${bytes.toString('base64')}`);
    expect(!parsed.ok && parsed.dlq.rawBytes).toEqual(bytes);
    expect(Buffer.from(textOrBase64(bytes).slice('base64:'.length), 'base64')).toEqual(bytes);
  });

  it('reads proven replay markers into replay_count, replay_source and lineage', () => {
    const parsed = parseRecord(
      replayed({ tenant_id: 'acme', _replayed_from_event_id: 1, _replay_source: 'operator_api', _replay_id: 'r-1' }),
      options(),
    );
    expect(parsed.ok && parsed.entry).toMatchObject({ replayCount: 1, replaySource: 'operator_api' });
    expect(parsed.ok && parsed.lineage).toEqual({
      replayedFrom: 1,
      source: 'operator_api',
      replayId: 'r-1',
      count: 1,
    });
  });

  it('counts replay hops from _replay_count and tolerates a replay without source', () => {
    const parsed = parseRecord(
      replayed({ tenant_id: 'acme', _replayed_from_event_id: 12, _replay_count: 2 }),
      options(),
    );
    expect(parsed.ok && parsed.entry).toMatchObject({ replayCount: 2, replaySource: 'unknown' });
    expect(parsed.ok && parsed.lineage?.replayedFrom).toBe(12);
  });

  it.each<[string, KafkaRecord]>([
    ['without a proof', record(JSON.stringify({ tenant_id: 'acme', _replayed_from_event_id: 1, _replay_count: 1 }))],
    [
      'with a proof from another key',
      record(JSON.stringify({ tenant_id: 'acme', _replayed_from_event_id: 1 }), {
        headers: {
          'x-replay-proof': Buffer.from(
            lineageProof(Buffer.alloc(32, 2), JSON.stringify({ tenant_id: 'acme', _replayed_from_event_id: 1 })),
          ),
        },
      }),
    ],
  ])('treats lineage fields %s as ordinary payload: an original', (_, r) => {
    const parsed = parseRecord(r, options());
    expect(parsed.ok && parsed.lineage).toBeNull();
    expect(parsed.ok && parsed.entry).toMatchObject({ replayCount: 0, replaySource: null });
  });
});

describe('eventTypeOf', () => {
  it('derives lead.created and job.created from the ApexFlow topics', () => {
    expect(eventTypeOf('apexflow.leads.created', {})).toBe('lead.created');
    expect(eventTypeOf('apexflow.jobs.created', {})).toBe('job.created');
  });
  it('prefers the type the payload declares', () => {
    expect(eventTypeOf('apexflow.jobs.created', { Type: 'JobCreated' })).toBe('JobCreated');
  });
});

describe('hostile headers', () => {
  it('a header named like an Object.prototype member (kafkajs adds the inherited function) keeps only its value', () => {
    const headers = { toString: [Object.prototype.toString, Buffer.from('x')] } as unknown as KafkaRecord['headers'];
    const parsed = parseRecord(record('{"tenant_id":"acme"}', { headers }), options());
    expect(parsed.ok).toBe(true);
    expect(parsed.ok && JSON.parse(parsed.entry.headersJson!)).toEqual([
      [Buffer.from('toString').toString('base64'), Buffer.from('x').toString('base64')],
    ]);
  });

  it('never throws: input the parser cannot handle is dead-lettered as parse_error with its bytes', () => {
    const hostile = {
      headers: new Proxy(
        {},
        {
          ownKeys: () => {
            throw new Error('boom');
          },
        },
      ),
    } as Partial<KafkaRecord>;
    const parsed = parseRecord(record('{"tenant_id":"acme"}', hostile), options());
    expect(parsed).toMatchObject({ ok: false, reason: 'parse_error' });
    expect(!parsed.ok && parsed.dlq.rawBytes?.toString()).toBe('{"tenant_id":"acme"}');
    expect(!parsed.ok && parsed.dlq.error).toMatch(/could not be parsed: boom/);
  });
});

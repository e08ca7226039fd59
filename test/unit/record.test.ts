import { eventTypeOf, parseRecord, payloadTenant, textOrBase64, type KafkaRecord } from '../../ingest/parse';

const record = (value: Buffer | string | null, extra: Partial<KafkaRecord> = {}): KafkaRecord => ({
  topic: 'apexflow.leads.created',
  partition: 1,
  offset: '42',
  key: Buffer.from('acme:1'),
  value: typeof value === 'string' ? Buffer.from(value) : value,
  ...extra,
});

describe('parseRecord', () => {
  it('accepts a lead event and keeps its Kafka coordinates, key and original JSON', () => {
    const json = '{"tenant_id":"acme","name":"Ada","email":"ada@example.com","source":"web"}';
    const parsed = parseRecord(record(json), 1024);
    expect(parsed).toEqual({
      ok: true,
      eventType: 'lead.created',
      replayedFrom: null,
      entry: {
        tenantId: 'acme',
        topic: 'apexflow.leads.created',
        payloadJson: json,
        partition: 1,
        offset: '42',
        key: 'acme:1',
        replayCount: 0,
        replaySource: null,
      },
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
    const parsed = parseRecord(record('{"name":"Ada"}', { headers: { 'x-tenant-id': Buffer.from('initech') } }), 1024);
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
  ])('rejects %j as %s with a precise error', (value, reason, error) => {
    const parsed = parseRecord(record(value), 1024);
    expect(parsed.ok).toBe(false);
    if (parsed.ok) return;
    expect(parsed.reason).toBe(reason);
    expect(parsed.dlq.reason).toBe(reason);
    expect(parsed.dlq.error).toMatch(error);
    expect(parsed.dlq).toMatchObject({ topic: 'apexflow.leads.created', partition: 1, offset: '42', key: 'acme:1' });
  });

  it('keeps the raw value of a record that is not JSON', () => {
    const parsed = parseRecord(record('not json at all'), 1024);
    expect(!parsed.ok && parsed.dlq.rawValue).toBe('not json at all');
  });

  it('keeps the payload (as JSON) of an event without tenant so it can be fixed and retried', () => {
    const parsed = parseRecord(record('{"name":"Ada"}'), 1024);
    expect(!parsed.ok && parsed.dlq.payloadJson).toBe('{"name":"Ada"}');
  });

  it('rejects a value larger than the configured size, naming the limit', () => {
    const parsed = parseRecord(record(JSON.stringify({ tenant_id: 'acme', blob: 'x'.repeat(200) })), 100);
    expect(!parsed.ok && parsed.reason).toBe('too_large');
    expect(!parsed.ok && parsed.dlq.error).toMatch(/larger than INGEST_MAX_EVENT_BYTES=100/);
  });

  it('stores invalid UTF-8 as base64 so no byte is lost', () => {
    const bytes = Buffer.from([0x7b, 0xff, 0xfe, 0x7d]);
    const parsed = parseRecord(record(bytes), 1024);
    expect(!parsed.ok && parsed.reason).toBe('invalid_utf8');
    expect(!parsed.ok && parsed.dlq.rawValue).toBe(`base64:${bytes.toString('base64')}`);
    expect(Buffer.from(textOrBase64(bytes).slice('base64:'.length), 'base64')).toEqual(bytes);
  });

  it('reads replay markers into replay_count and replay_source', () => {
    const json = JSON.stringify({ tenant_id: 'acme', _replayed_from_event_id: 1, _replay_source: 'operator_api' });
    const parsed = parseRecord(record(json), 1024);
    expect(parsed.ok && parsed.entry).toMatchObject({ replayCount: 1, replaySource: 'operator_api' });
    expect(parsed.ok && parsed.replayedFrom).toBe(1);
  });

  it('counts replay hops from _replay_count and tolerates a replay without source', () => {
    const json = JSON.stringify({ tenant_id: 'acme', _replayed_from_event_id: '12', _replay_count: 2 });
    const parsed = parseRecord(record(json), 1024);
    expect(parsed.ok && parsed.entry).toMatchObject({ replayCount: 2, replaySource: 'unknown' });
    expect(parsed.ok && parsed.replayedFrom).toBe(12);
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

import { JOBS_TOPIC, LEADS_TOPIC, makeEvent, tenantName } from '../../cli/traffic';

describe('test traffic', () => {
  it('makes lead events with name, email and source, as ApexFlow publishes them', () => {
    const lead = makeEvent(0, 5);
    expect(lead.topic).toBe(LEADS_TOPIC);
    const payload = JSON.parse(lead.value);
    expect(payload).toMatchObject({ event_type: 'lead.created', tenant_id: 'acme', seq: 0 });
    expect(payload.name).toMatch(/^\w+ \w+$/);
    expect(payload.email).toMatch(/@example\.com$/);
    expect(typeof payload.source).toBe('string');
  });

  it('makes job events with lead_id, title, status and description', () => {
    const job = makeEvent(2, 5);
    expect(job.topic).toBe(JOBS_TOPIC);
    expect(JSON.parse(job.value)).toEqual(
      expect.objectContaining({
        event_type: 'job.created',
        lead_id: expect.any(Number),
        title: expect.any(String),
        status: expect.any(String),
        description: expect.any(String),
      }),
    );
  });

  it('keeps payloads realistic in size (300–500 bytes) and spreads them over the tenants', () => {
    const events = Array.from({ length: 3000 }, (_, i) => makeEvent(i, 50));
    for (const e of events) {
      expect(Buffer.byteLength(e.value)).toBeGreaterThanOrEqual(300);
      expect(Buffer.byteLength(e.value)).toBeLessThanOrEqual(500);
    }
    expect(new Set(events.map((e) => JSON.parse(e.value).tenant_id)).size).toBe(50);
    expect(tenantName(1)).toBe('tenant-002');
  });

  it('sends everything to one topic when asked', () => {
    expect(new Set(Array.from({ length: 10 }, (_, i) => makeEvent(i, 2, 'x.jobs.created').topic))).toEqual(
      new Set(['x.jobs.created']),
    );
  });
});

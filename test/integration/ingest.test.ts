import { LINEAGE_HEADERS, lineageProof } from '../../journal/lineage';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';

let h: SinkHarness;

beforeAll(async () => {
  h = await createSinkHarness('ingest');
  await h.startIngest();
});
afterAll(() => h.close());

/** Rows matching, or undefined while there are none (so that eventually() keeps polling). */
const rowsWhere = async (sql: string, values: unknown[] = []) => {
  const { rows } = await h.pool.query(sql, values);
  return rows.length ? rows : undefined;
};

describe('ingest through real Kafka into real Postgres', () => {
  it('journals an event with tenant, topic, payload, Kafka coordinates and key', async () => {
    const lead = {
      tenant_id: 'acme',
      name: 'Grafana Event Test 1',
      email: 'grafana1@test.com',
      source: 'dashboard-test',
    };
    await h.send(h.topics.leads, [lead], { partition: 2, key: 'acme:lead-1' });
    const [row] = await eventually(
      () => rowsWhere("SELECT * FROM event_journal WHERE payload->>'email' = 'grafana1@test.com'"),
      'the lead to be journaled',
    );
    expect(row).toMatchObject({
      tenant_id: 'acme',
      topic: h.topics.leads,
      payload: lead,
      kafka_partition: 2,
      kafka_key: 'acme:lead-1',
      replay_count: 0,
      replay_source: null,
    });
    expect(typeof row.kafka_offset).toBe('number');
    expect(row.received_at).toBeInstanceOf(Date);
    expect(Date.now() - row.received_at.getTime()).toBeLessThan(60_000);
  });

  it('reads the tenant from tenantId, TenantId or the x-tenant-id header', async () => {
    await h.send(h.topics.jobs, [
      { tenantId: 'globex', title: 'camel', lead_id: 1, status: 'Open', description: 'a' },
      { TenantId: 'initech', title: 'pascal', lead_id: 1, status: 'Open', description: 'b' },
    ]);
    await h.send(h.topics.jobs, [{ title: 'header', lead_id: 1, status: 'Open', description: 'c' }], {
      headers: { 'x-tenant-id': 'umbrella' },
    });
    const rows = await eventually(async () => {
      const r = await rowsWhere(
        "SELECT tenant_id, payload->>'title' AS title FROM event_journal WHERE topic = $1 AND payload->>'title' IN ('camel','pascal','header') ORDER BY title",
        [h.topics.jobs],
      );
      return r?.length === 3 ? r : undefined;
    }, 'three jobs');
    expect(rows).toEqual([
      { tenant_id: 'globex', title: 'camel' },
      { tenant_id: 'umbrella', title: 'header' },
      { tenant_id: 'initech', title: 'pascal' },
    ]);
  });

  it('sends a poison message to the DLQ with the error and raw value, and journals the next good one', async () => {
    await h.send(h.topics.leads, ['{"tenant_id": "acme", broken', { tenant_id: 'acme', name: 'after-poison' }], {
      partition: 0,
    });
    const dlq = await eventually(
      () => rowsWhere('SELECT * FROM event_dlq WHERE raw_value = \'{"tenant_id": "acme", broken\''),
      'the poison record in the DLQ',
    );
    expect(dlq[0]).toMatchObject({
      topic: h.topics.leads,
      reason: 'invalid_json',
      kafka_partition: 0,
      status: 'pending',
    });
    expect(dlq[0].error).toMatch(/^Record value is not valid JSON/);
    const good = await eventually(
      () => rowsWhere("SELECT id FROM event_journal WHERE payload->>'name' = 'after-poison'"),
      'the next good event',
    );
    expect(good).toHaveLength(1);
    expect(h.ingest?.isPaused()).toBe(false);
  });

  it('dead-letters the one row a CHECK constraint refuses and journals its batch-mates', async () => {
    await h.pool.query(
      "ALTER TABLE event_journal ADD CONSTRAINT test_constraint CHECK (payload->>'name' IS DISTINCT FROM 'Poison Pill')",
    );
    try {
      const batch = ['Mate 1', 'Mate 2', 'Poison Pill', 'Mate 3', 'Mate 4'].map((name) => ({
        tenant_id: 'acme',
        name,
      }));
      await h.send(h.topics.leads, batch, { partition: 1 }); // one request, one partition: one consumed batch
      const mates = await eventually(async () => {
        const r = await rowsWhere(
          "SELECT payload->>'name' AS name FROM event_journal WHERE payload->>'name' LIKE 'Mate %' ORDER BY 1",
        );
        return r?.length === 4 ? r : undefined;
      }, 'the four batch-mates');
      expect(mates.map((r) => r.name)).toEqual(['Mate 1', 'Mate 2', 'Mate 3', 'Mate 4']);
      const [dead] = await eventually(
        () => rowsWhere("SELECT * FROM event_dlq WHERE payload->>'name' = 'Poison Pill'"),
        'the refused row in the DLQ',
      );
      expect(dead).toMatchObject({ reason: 'db_error', tenant_id: 'acme', topic: h.topics.leads, kafka_partition: 1 });
      expect(dead.error).toMatch(/violates check constraint "test_constraint" \(SQLSTATE 23514\)/);
    } finally {
      await h.pool.query('ALTER TABLE event_journal DROP CONSTRAINT test_constraint');
    }
  });

  it.each([
    ['a JSON array', '[1,2]', 'not_object'],
    ['an event without tenant', '{"name":"nobody"}', 'missing_tenant'],
    ['a tombstone', null, 'empty_value'],
    ['invalid UTF-8', Buffer.from([0x7b, 0xc3, 0x28, 0x7d]), 'invalid_utf8'],
  ])('dead-letters %s and keeps consuming', async (_what, value, reason) => {
    const key = `bad-${reason}`;
    await h.send(h.topics.jobs, [value], { key });
    const rows = await eventually(
      () => rowsWhere('SELECT reason, error FROM event_dlq WHERE kafka_key = $1', [key]),
      `${reason} in the DLQ`,
    );
    expect(rows).toHaveLength(1);
    expect(rows[0].reason).toBe(reason);
    expect(rows[0].error.length).toBeGreaterThan(10);
  });

  it('journals replay markers as replay_count and replay_source when the lineage proof verifies', async () => {
    // A replay as this service sends it: lineage fields plus x-replay-proof over the value (journal/lineage.ts).
    const value = JSON.stringify({
      tenant_id: 'acme',
      name: 'replayed-lead',
      _replayed_from_event_id: 1,
      _replay_source: 'operator_api',
    });
    await h.send(h.topics.leads, [value], { headers: { [LINEAGE_HEADERS.proof]: lineageProof(h.lineageKey, value) } });
    const [row] = await eventually(
      () => rowsWhere("SELECT replay_count, replay_source FROM event_journal WHERE payload->>'name' = 'replayed-lead'"),
      'the replayed event',
    );
    expect(row).toEqual({ replay_count: 1, replay_source: 'operator_api' });
  });

  it('counts ingested, persisted, replayed and DLQ events in Prometheus metrics consistent with the tables', async () => {
    const text = await h.metrics.registry.metrics();
    const sum = (name: string) =>
      text
        .split('\n')
        .filter((l) => l.startsWith(`${name}{`))
        .reduce((total, l) => total + Number(l.split(' ').pop()), 0);
    expect(sum('crm_events_persisted_total')).toBe(await h.journalCount());
    expect(sum('crm_events_dlq_total')).toBe(await h.dlqCount());
    expect(sum('crm_events_ingested_total')).toBe((await h.journalCount()) + (await h.dlqCount()));
    expect(text).toMatch(/crm_events_replayed_total\{topic="[^"]+",replay_source="operator_api"\} 1/);
    expect(text).toMatch(/crm_events_ingested_total\{tenant_id="acme",topic="test\.[^"]+\.leads\.created"\}/);
    expect(text).toMatch(/crm_events_batch_persist_seconds_count \d+/);
    // Invariant 3: per partition, consumed = journaled + dead-lettered + redelivered (nothing redelivered here).
    const outcome = (o: string) =>
      text
        .split('\n')
        .filter((l) => l.startsWith('crm_events_record_outcomes_total{') && l.includes(`outcome="${o}"`))
        .reduce((total, l) => total + Number(l.split(' ').pop()), 0);
    expect(sum('crm_events_consumed_total')).toBe((await h.journalCount()) + (await h.dlqCount()));
    expect(outcome('journaled')).toBe(await h.journalCount());
    expect(outcome('dead_lettered')).toBe(await h.dlqCount());
    expect(outcome('redelivered')).toBe(0);
  });
});

describe('the SQL queries printed in the operator docs run unchanged', () => {
  const seedQueries: [string, string][] = [
    ['events by topic', 'SELECT topic, COUNT(*) AS events FROM event_journal GROUP BY topic ORDER BY topic;'],
    ['latest DLQ', 'SELECT id, topic, received_at, left(error,120) AS error FROM event_dlq ORDER BY id DESC LIMIT 20;'],
    ['DLQ by error', 'SELECT error, COUNT(*) FROM event_dlq GROUP BY error ORDER BY COUNT(*) DESC;'],
    ['last 7 days', "SELECT id FROM event_journal WHERE received_at >= NOW() - INTERVAL '7 days' ORDER BY id;"],
    [
      'by tenant',
      "SELECT id, topic, payload->>'name', received_at FROM event_journal WHERE tenant_id = 'acme' ORDER BY received_at DESC;",
    ],
    [
      'by topic',
      "SELECT id, tenant_id, payload, received_at FROM event_journal WHERE topic = 'apexflow.leads.created' ORDER BY received_at DESC LIMIT 20;",
    ],
    ['all DLQ', 'SELECT * FROM event_dlq ORDER BY received_at DESC;'],
    ['since a date', "SELECT id FROM event_journal WHERE received_at >= '2025-11-03 00:00:00' ORDER BY id;"],
    [
      'original vs replayed',
      "SELECT CASE WHEN replay_count = 0 THEN 'Original' ELSE 'Replayed' END AS type, COUNT(*) FROM event_journal GROUP BY type;",
    ],
    [
      'all replays',
      "SELECT id, topic, replay_source, payload->>'_replayed_from_event_id' as original_event_id FROM event_journal WHERE replay_count > 0;",
    ],
    [
      'per day',
      'SELECT DATE(received_at), SUM(CASE WHEN replay_count = 0 THEN 1 ELSE 0 END) as original, SUM(CASE WHEN replay_count > 0 THEN 1 ELSE 0 END) as replayed FROM event_journal GROUP BY DATE(received_at);',
    ],
    [
      'incident window',
      "SELECT id, topic, tenant_id, payload->>'_replayed_from_event_id' as source_event, received_at FROM event_journal WHERE replay_count > 0 AND received_at BETWEEN '2025-11-03 14:00' AND '2025-11-03 15:00';",
    ],
    [
      'replays of event 42',
      "SELECT id, topic, received_at FROM event_journal WHERE payload->>'_replayed_from_event_id' = '42';",
    ],
    ['by source', 'SELECT replay_source, COUNT(*) FROM event_journal WHERE replay_count > 0 GROUP BY replay_source;'],
    [
      'recovery audit',
      "SELECT payload->>'_replayed_from_event_id' as source, COUNT(*) as replays FROM event_journal WHERE replay_count > 0 AND received_at > NOW() - INTERVAL '1 hour' GROUP BY source;",
    ],
    ['DLQ size panel', 'SELECT COUNT(*) FROM event_dlq'],
  ];
  it.each(seedQueries)('%s', async (_name, sql) => {
    await expect(h.pool.query(sql)).resolves.toHaveProperty('rows');
  });

  it('the replay-tracking query finds the replayed event with its source', async () => {
    const { rows } = await h.pool.query(
      'SELECT replay_source, COUNT(*)::int AS n FROM event_journal WHERE replay_count > 0 GROUP BY replay_source',
    );
    expect(rows).toEqual([{ replay_source: 'operator_api', n: 1 }]);
  });
});

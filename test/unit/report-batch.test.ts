import { Writable } from 'node:stream';
import pino from 'pino';
import type { AppendOutcome } from '../../journal/append';
import { lineageProof } from '../../journal/lineage';
import { parseRecord, type Accepted } from '../../journal/record';
import { reportBatch } from '../../ingest/report-batch';
import { createMetrics } from '../../shared/metrics';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(JSON.parse(chunk.toString()));
      done();
    },
  });
  return { log: pino({ level: 'info' }, stream), lines };
}

const lineageKey = Buffer.alloc(32, 1);

/** A parsed record; one with lineage fields carries a valid proof, as this service's replays do. */
const accepted = (value: object, offset: number) => {
  const bytes = Buffer.from(JSON.stringify(value));
  const parsed = parseRecord(
    {
      topic: 'apexflow.leads.created',
      partition: 0,
      offset: String(offset),
      key: null,
      value: bytes,
      headers: '_replayed_from_event_id' in value ? { 'x-replay-proof': lineageProof(lineageKey, bytes) } : {},
    },
    { maxBytes: 10_000, lineageKey },
  );
  if (!parsed.ok) throw new Error(`test record rejected: ${parsed.dlq.error}`);
  return parsed;
};

function outcome(records: Accepted[], redelivered = 0): AppendOutcome {
  return {
    outcomes: [...records.map(() => 'journaled' as const), ...Array<'redelivered'>(redelivered).fill('redelivered')],
    journaled: records.map((record, i) => ({
      record,
      row: {
        id: i + 1,
        topic: record.entry.topic,
        kafka_partition: 0,
        kafka_offset: i,
        content_hash: record.entry.contentHash,
        received_at: new Date(),
      },
    })),
    redelivered,
    deadLetters: [],
    reused: [],
  };
}

describe('reportBatch', () => {
  it('logs small batches one line per event, in the operator docs wording', async () => {
    const { log, lines } = capture();
    reportBatch(
      outcome([
        accepted({ tenant_id: 'acme', name: 'Ada' }, 0),
        accepted({ tenant_id: 'acme', _replayed_from_event_id: 1, _replay_source: 'operator_api' }, 1),
      ]),
      createMetrics(),
      log,
      10,
    );
    await new Promise((r) => setImmediate(r));
    expect(lines.map((l) => l.msg)).toEqual([
      'Persisted lead.created for tenant acme',
      'Persisted REPLAYED lead.created for tenant acme (from event 1)',
    ]);
    expect(lines[1]).toMatchObject({ event_id: 2, tenant_id: 'acme', replay_count: 1, replayed_from: 1 });
  });

  it('summarises a large batch in one line', async () => {
    const { log, lines } = capture();
    const records = Array.from({ length: 50 }, (_, i) => accepted({ tenant_id: `t${i % 3}`, i }, i));
    reportBatch(outcome(records, 4), createMetrics(), log, 10);
    await new Promise((r) => setImmediate(r));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      msg: 'Persisted 50 events (0 REPLAYED)',
      persisted: 50,
      by_type: { 'lead.created': 50 },
      redelivered: 4,
    });
  });

  it('counts persisted and replayed events by tenant, topic and source', async () => {
    const metrics = createMetrics();
    reportBatch(
      outcome([
        accepted({ tenant_id: 'acme' }, 0),
        accepted({ tenant_id: 'acme', _replayed_from_event_id: 9, _replay_source: 'range' }, 1),
      ]),
      metrics,
      capture().log,
      10,
    );
    const text = await metrics.registry.metrics();
    expect(text).toContain('crm_events_persisted_total{tenant_id="acme",topic="apexflow.leads.created"} 2');
    expect(text).toContain('crm_events_replayed_total{topic="apexflow.leads.created",replay_source="range"} 1');
  });

  it('counts and logs dead letters by reason, and does not count unproven lineage as a replay', async () => {
    const metrics = createMetrics();
    const { log, lines } = capture();
    const rejected = parseRecord(
      { topic: 'apexflow.leads.created', partition: 0, offset: '7', key: null, value: Buffer.from('{"name":"x"}') },
      { maxBytes: 10_000, lineageKey },
    );
    if (rejected.ok) throw new Error('expected a rejected record');
    const forged = parseRecord(
      {
        topic: 'apexflow.leads.created',
        partition: 0,
        offset: '8',
        key: null,
        value: Buffer.from(JSON.stringify({ tenant_id: 'acme', _replayed_from_event_id: 3, _replay_source: 'x' })),
        headers: { 'x-replay-proof': 'not-a-proof' },
      },
      { maxBytes: 10_000, lineageKey },
    ) as Accepted;
    reportBatch(
      { ...outcome([forged]), deadLetters: [{ entry: rejected.dlq, reason: rejected.reason }] },
      metrics,
      log,
      10,
    );
    await new Promise((r) => setImmediate(r));
    expect(lines.map((l) => l.msg)).toEqual([
      expect.stringMatching(/^Sent record to DLQ: Event has no tenant/),
      'Persisted lead.created for tenant acme',
    ]);
    expect(lines[0]).toMatchObject({ offset: '7', reason: 'missing_tenant' });
    const text = await metrics.registry.metrics();
    expect(text).toContain('crm_events_dlq_total{topic="apexflow.leads.created",reason="missing_tenant"} 1');
    expect(text).not.toMatch(/crm_events_replayed_total\{[^}]*\} [1-9]/);
  });
});

import { Writable } from 'node:stream';
import pino from 'pino';
import { parseRecord, type Accepted } from '../../ingest/parse';
import type { BatchOutcome } from '../../ingest/persist-batch';
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

const accepted = (value: object, offset: number) =>
  parseRecord(
    {
      topic: 'apexflow.leads.created',
      partition: 0,
      offset: String(offset),
      key: null,
      value: Buffer.from(JSON.stringify(value)),
    },
    10_000,
  ) as Accepted;

function outcome(records: Accepted[]): BatchOutcome {
  return {
    journaled: records.map((record, i) => ({
      record,
      row: { id: i + 1, topic: record.entry.topic, kafka_partition: 0, kafka_offset: i, received_at: new Date() },
    })),
    duplicates: 0,
    deadLetters: [],
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
    reportBatch(outcome(records), createMetrics(), log, 10);
    await new Promise((r) => setImmediate(r));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      msg: 'Persisted 50 events (0 REPLAYED)',
      persisted: 50,
      by_type: { 'lead.created': 50 },
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
});

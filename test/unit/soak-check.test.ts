import {
  checkAccounting,
  checkRecords,
  checkReplays,
  stuckPartitions,
  type DlqRow,
  type JournalRow,
  type Produced,
  type ReplayRow,
} from '../../bench/soak/check';

const b64 = (s: string) => Buffer.from(s).toString('base64');
const produced = (offset: string, json: string, over: Partial<Produced> = {}): Produced => ({
  topic: 't',
  partition: 0,
  offset,
  kind: 'steady',
  key: b64('acme'),
  value: b64(json),
  canonical: json,
  ...over,
});
const row = (id: number, offset: string, payload: string, over: Partial<JournalRow> = {}): JournalRow => ({
  id,
  topic: 't',
  partition: 0,
  offset,
  payload,
  replayCount: 0,
  ...over,
});
const dead = (id: number, offset: string, over: Partial<DlqRow> = {}): DlqRow => ({
  id,
  topic: 't',
  partition: 0,
  offset,
  payload: null,
  rawValue: null,
  status: 'open',
  ...over,
});

describe('soak checker: every produced record in exactly one place', () => {
  it('accepts a journal row and a DLQ row holding what was produced', () => {
    const bad = produced('1', '', { value: b64('\u00ff garbage'), canonical: null });
    const v = checkRecords(
      [produced('0', '{"a": 1}'), bad],
      [row(1, '0', '{"a": 1}')],
      [dead(1, '1', { rawValue: '\u00ff garbage' })],
    );
    expect(v).toMatchObject({ produced: 2, journaled: 1, deadLettered: 1, lost: 0, altered: 0, duplicated: 0 });
    expect(v.violations).toEqual([]);
  });

  it('names a record with no row as lost, and one whose coordinates hold other content as altered', () => {
    const v = checkRecords([produced('0', '{"a": 1}'), produced('1', '{"b": 2}')], [row(1, '1', '{"b": 3}')], []);
    expect(v.lost).toBe(1);
    expect(v.altered).toBe(1);
    expect(v.violations.map((x) => x.rule).sort()).toEqual(['altered', 'lost']);
  });

  it('needs a row for each of two records at one coordinate after a topic re-creation', () => {
    const before = produced('0', '{"gen": 1}');
    const after = produced('0', '{"gen": 2}');
    expect(
      checkRecords([before, after], [row(1, '0', '{"gen": 1}'), row(2, '0', '{"gen": 2}')], []).violations,
    ).toEqual([]);
    const dropped = checkRecords([before, after], [row(1, '0', '{"gen": 1}')], []);
    expect(dropped.lost).toBe(1);
  });

  it('flags a record both journaled and in an open DLQ row, but not one whose DLQ row was resolved', () => {
    const p = produced('0', '{"a": 1}');
    const both = checkRecords([p], [row(1, '0', '{"a": 1}')], [dead(9, '0', { payload: '{"a": 1}' })]);
    expect(both.duplicated).toBe(1);
    const resolved = checkRecords(
      [p],
      [row(1, '0', '{"a": 1}')],
      [dead(9, '0', { payload: '{"a": 1}', status: 'resolved' })],
    );
    expect(resolved.violations).toEqual([]);
    expect(resolved.resolvedFromDlq).toBe(1);
  });

  it('compares raw bytes and key bytes when the schema stores them', () => {
    const p = produced('0', '{"a": 1}', { key: b64('\u0001key') });
    expect(checkRecords([p], [row(1, '0', '{"a": 1}', { keyBytes: b64('base64:AWtleQ==') })], []).altered).toBe(1);
    const tomb = produced('1', '', { value: null, canonical: null });
    expect(checkRecords([tomb], [], [dead(2, '1', { rawBytes: null })]).deadLettered).toBe(1);
    expect(checkRecords([tomb], [], [dead(2, '1', { rawBytes: b64('x') })]).altered).toBe(1);
  });
});

describe('soak checker: replays', () => {
  const replay = (id: number, over: Partial<ReplayRow> = {}): ReplayRow => ({
    id,
    topic: 't',
    partition: 1,
    offset: String(100 + id),
    replayId: 'replay-event-7-x',
    fromEventId: '7',
    contentEqual: true,
    keyEqual: true,
    ...over,
  });

  it('flags a replay journaled twice, an altered one and a completed replay missing an event', () => {
    const v = checkReplays(
      [replay(1), replay(2), replay(3, { replayId: 'replay-batch-y', fromEventId: '8', contentEqual: false })],
      new Set(),
      [{ workflowId: 'replay-batch-y', eventIds: [8, 9] }],
    );
    expect(v.duplicated).toBe(1);
    expect(v.altered).toBe(1);
    expect(v.incomplete).toBe(1);
    expect(v.violations.find((x) => x.rule === 'replay_incomplete')?.detail).toContain('events 9');
  });

  it('leaves rows holding a produced record (forged lineage) to the record check, whatever their coordinates', () => {
    const forged = row(1, '5', '{"_replay_id":"replay-event-7-x","_replayed_from_event_id":7}', { replayCount: 1 });
    const { originalIds } = checkRecords([produced('5', forged.payload)], [forged], []);
    const real = replay(2, { partition: 0, offset: '5' }); // same coordinates after a topic re-creation
    const v = checkReplays([replay(1, { partition: 0, offset: '5', contentEqual: false }), real], originalIds, [
      { workflowId: 'replay-event-7-x', eventIds: [7] },
    ]);
    expect(v).toMatchObject({ replayRows: 1, forgedRows: 1, violations: [] });
  });
});

describe('soak checker: partitions and metrics', () => {
  it('reports partitions whose group is behind the high watermark', () => {
    const v = stuckPartitions([
      { topic: 't', partition: 0, committed: '10', high: '10' },
      { topic: 't', partition: 1, committed: '3', high: '10' },
      { topic: 't', partition: 2, committed: '-1', high: '0' },
    ]);
    expect(v.map((x) => x.detail)).toEqual(['t/1: committed 3, high watermark 10']);
  });

  it('checks consumed = sum of outcomes per partition', () => {
    const text = [
      'crm_events_consumed_total{topic="t",partition="0"} 5',
      'crm_events_record_outcomes_total{topic="t",partition="0",outcome="journaled"} 4',
      'crm_events_record_outcomes_total{topic="t",partition="0",outcome="dead_lettered"} 1',
      'crm_events_consumed_total{topic="t",partition="1"} 3',
      'crm_events_record_outcomes_total{topic="t",partition="1",outcome="journaled"} 2',
    ].join('\n');
    const v = checkAccounting(text);
    expect(v.present).toBe(true);
    expect(v.violations.map((x) => x.detail)).toEqual(['t/1: consumed 3, outcomes 2']);
    expect(checkAccounting('').present).toBe(false);
  });
});

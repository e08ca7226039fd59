import {
  checkAccounting,
  checkIngestTotals,
  checkRecords,
  checkReplayFaults,
  checkReplays,
  consumerRestarts,
  counterTotals,
  stuckPartitions,
  type DlqRow,
  type IngestProcess,
  type JournalRow,
  type Produced,
  type ReplayRow,
  type TopicDeletion,
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

describe('soak checker: records on a deleted topic', () => {
  // The group had committed offset 10 on t/0 (high watermark 12) when the topic was deleted at t=1000.
  const deletion: TopicDeletion = {
    topic: 't',
    snapshotAt: 990,
    deleteRequestedAt: 1000,
    createRequestedAt: 2000,
    partitions: [{ partition: 0, committed: '10', high: '12' }],
  };
  const acked = (offset: string, ackedAt: number, over: Partial<Produced> = {}) =>
    produced(offset, `{"o": ${offset}, "at": ${ackedAt}}`, { ackedAt, ...over });

  it('counts unconsumed records at or after the committed offset as deleted with the topic, not lost', () => {
    const v = checkRecords(
      [acked('9', 500), acked('10', 600), acked('11', 700)],
      [row(1, '9', '{"o": 9, "at": 500}')],
      [],
      [deletion],
    );
    expect(v).toMatchObject({ lost: 0, deletedWithTopic: 2, violations: [] });
    expect(v.deletedWithTopicDetail).toEqual([
      { topic: 't', partition: 0, committed: '10', high: '12', offsets: ['10', '11'] },
    ]);
  });

  it('still reports as lost: below the committed offset, another topic or partition, or no delete', () => {
    expect(checkRecords([acked('9', 500)], [], [], [deletion]).lost).toBe(1);
    expect(checkRecords([acked('10', 500, { topic: 'u' })], [], [], [deletion]).lost).toBe(1);
    const other = checkRecords([acked('10', 500, { partition: 1 })], [], [], [deletion]);
    expect(other.lost).toBe(1);
    expect(other.violations[0].detail).toContain('no offsets were read for partition 1');
    expect(checkRecords([acked('10', 500)], [], [], []).lost).toBe(1);
    expect(checkRecords([produced('10', '{"a": 1}')], [], [], [deletion]).lost).toBe(1); // no acknowledgement time
  });

  it('still reports as lost: a record acknowledged once the topic was re-created (the new log)', () => {
    const v = checkRecords([acked('10', 2500)], [], [], [deletion]);
    expect(v).toMatchObject({ lost: 1, deletedWithTopic: 0 });
  });

  it('still reports as lost: a record the consumer went past (a later record of the deleted log has a row)', () => {
    const v = checkRecords(
      [acked('10', 600), acked('11', 700)],
      [row(2, '11', '{"o": 11, "at": 700}')],
      [],
      [deletion],
    );
    expect(v).toMatchObject({ lost: 1, deletedWithTopic: 0 });
    expect(v.violations[0].detail).toContain('a later record of the deleted log (offset 11) has a row');
  });

  it('still reports as lost: past the high watermark read after it was acknowledged', () => {
    expect(checkRecords([acked('12', 900)], [], [], [deletion]).lost).toBe(1);
    expect(checkRecords([acked('12', 995)], [], [], [deletion]).deletedWithTopic).toBe(1); // acknowledged after the read
  });

  it('places a record in the delete that followed it when a topic is deleted twice', () => {
    const second: TopicDeletion = {
      ...deletion,
      snapshotAt: 4990,
      deleteRequestedAt: 5000,
      createRequestedAt: 6000,
      partitions: [{ partition: 0, committed: '3', high: '5' }],
    };
    // Offset 4 of the second log: below the first delete's committed offset 10, at/after the second's 3.
    const v = checkRecords([acked('4', 3000)], [], [], [deletion, second]);
    expect(v).toMatchObject({ lost: 0, deletedWithTopic: 1 });
    expect(checkRecords([acked('2', 3000)], [], [], [deletion, second]).lost).toBe(1);
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

  it('reads the Kafka consumer restarts by reason from a scrape', () => {
    const text = [
      '# HELP crm_events_ingest_consumer_restarts_total Kafka consumer restarts',
      'crm_events_ingest_consumer_restarts_total{reason="stalled"} 0',
      'crm_events_ingest_consumer_restarts_total{reason="crashed"} 2',
      'crm_events_consumed_total{topic="t",partition="0"} 7',
    ].join('\n');
    expect(consumerRestarts(text)).toEqual({ stalled: 0, crashed: 2 });
    expect(consumerRestarts('up 1')).toEqual({});
  });

  it('sums counters, and checks them across ingest processes against the rows ingest wrote', () => {
    const text = [
      'crm_events_consumed_total{topic="t",partition="0"} 7',
      'crm_events_record_outcomes_total{topic="t",partition="0",outcome="journaled"} 4',
      'crm_events_record_outcomes_total{topic="t",partition="0",outcome="dead_lettered"} 1',
      'crm_events_record_outcomes_total{topic="t",partition="0",outcome="redelivered"} 2',
    ].join('\n');
    const totals = counterTotals(text)!;
    expect(totals).toEqual({ consumed: 7, journaled: 4, dead_lettered: 1, redelivered: 2 });
    expect(counterTotals('up 1')).toBeUndefined();
    const p = (pid: number): IngestProcess => ({ pid, startedAt: 0, scrapes: 1, lastScrapeAt: 1, totals });
    const rows = { journal: 8, dlq: 2, blindJournal: 0, blindDlq: 0 };
    expect(checkIngestTotals([p(1), p(2)], rows).violations).toEqual([]);
    // Rows counted that are not there.
    expect(checkIngestTotals([p(1), p(2)], { ...rows, journal: 7 }).violations.map((x) => x.rule)).toEqual([
      'metrics_exceed_rows',
    ]);
    // Rows no process counted: allowed only as many as were written in the windows no scrape saw.
    expect(checkIngestTotals([p(1), p(2)], { ...rows, journal: 10 }).violations.map((x) => x.rule)).toEqual([
      'rows_not_counted',
    ]);
    expect(checkIngestTotals([p(1), p(2)], { ...rows, journal: 10, blindJournal: 2 }).violations).toEqual([]);
  });
});

describe('soak checker: replays around topic deletion', () => {
  const failed = {
    workflowId: 'replay-range-1',
    targetTopic: 'soak.replay.target.1',
    workflowStatus: 'FAILED',
    auditStatus: 'failed',
    auditError: 'Kafka has no topic "soak.replay.target.1" to publish to (deleted, or never created)',
    failureType: 'UnknownTopic',
    nonRetryable: true,
  };

  it('accepts a replay failed non-retryably with UnknownTopic and audited as failed', () => {
    const v = checkReplayFaults([{ kind: 'replay_target_deleted', midReplayDelete: failed }]);
    expect(v).toMatchObject({ midReplayDeletes: 1, inconclusive: 0, violations: [] });
  });

  it('flags a replay still running, failed otherwise, or audited otherwise; counts unarranged runs apart', () => {
    const v = checkReplayFaults([
      {
        kind: 'replay_target_deleted',
        midReplayDelete: { ...failed, workflowStatus: 'RUNNING', auditStatus: 'running' },
      },
      { kind: 'replay_target_deleted', midReplayDelete: { ...failed, failureType: 'Error', nonRetryable: false } },
      { kind: 'replay_target_deleted', midReplayDelete: { ...failed, inconclusive: 'completed before the delete' } },
    ]);
    expect(v.midReplayDeletes).toBe(2);
    expect(v.inconclusive).toBe(1);
    expect(v.violations.map((x) => x.detail)).toEqual([
      expect.stringContaining('workflow RUNNING, not FAILED; audit status running, not failed'),
      expect.stringContaining('failure type Error, not UnknownTopic; failure not non-retryable'),
    ]);
  });

  it('flags a replay refused right after its topic was re-created', () => {
    const v = checkReplayFaults([
      { kind: 'topic_recreate', replayAfterRecreate: { request: 'POST /replay/5', status: 202 } },
      { kind: 'topic_recreate', replayAfterRecreate: { request: 'POST /replay/7', status: 200 } },
      { kind: 'topic_recreate', replayAfterRecreate: { request: 'POST /replay/6', status: 400, error: 'no topic' } },
    ]);
    expect(v.replaysAfterRecreate).toBe(3);
    expect(v.violations.map((x) => x.rule)).toEqual(['replay_after_recreate_refused']);
  });
});

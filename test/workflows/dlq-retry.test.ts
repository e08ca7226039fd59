import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { classified } from '../../journal/error-class';
import { parseRecord } from '../../journal/record';
import { insertDlqEntries, type NewDlqEntry } from '../../repository/event-dlq';
import type { DlqRetryResult } from '../../workflows/definitions';
import type { SinkHarness } from '../support/sink';
import { createTimeSkippingWorld } from '../support/temporal';

let env: TestWorkflowEnvironment;
let h: SinkHarness;
let close: () => Promise<void>;
const taskQueue = 'dlq-retry-test';

beforeAll(async () => {
  ({ env, h, close } = await createTimeSkippingWorld('dlqretry', taskQueue, {
    DLQ_RETRY_MAX_ATTEMPTS: '3',
    DLQ_RETRY_BASE_DELAY: '10m',
  }));
});
afterAll(() => close?.());

let run = 0;
const retryDue = (): Promise<DlqRetryResult> =>
  env.client.workflow.execute('dlqRetryWorkflow', {
    taskQueue,
    workflowId: `dlq-retry-test-${++run}`,
    args: [{ source: 'automated' }],
    // The test server may skip ahead to a finished workflow's execution timeout; keep that jump small (30 s: below
    // every "not due yet" margin below, and above what a run takes in real time on a busy machine; 10 s was not).
    workflowExecutionTimeout: '30s',
  });

const entry = async (id: number) => (await h.pool.query('SELECT * FROM event_dlq WHERE id = $1', [id])).rows[0];

/** A dead letter resolved by its first attempt, and the journal row it resolved to. */
async function resolvedRow(id: number) {
  const dlq = await entry(id);
  expect(dlq).toMatchObject({ status: 'resolved', attempts: 1 });
  const { rows } = await h.pool.query('SELECT * FROM event_journal WHERE id = $1', [dlq.resolved_event_id]);
  expect(rows).toHaveLength(1);
  return { dlq, row: rows[0] };
}

it('resolves what can be journaled now, backs off the rest exponentially and parks it after the maximum', async () => {
  // Dead letters written before the record's bytes were kept: no raw bytes, key bytes, headers, timestamp or hash.
  const legacy = {
    topic: h.topics.leads,
    rawValue: null,
    reason: 'db_error',
    error: 'simulated outage',
    key: null,
    rawBytes: null,
    keyBytes: null,
    headersJson: null,
    timestamp: null,
    contentHash: null,
  };
  // A dead letter as ingest writes it now: the journal refused the record (a db_error), kept as consumed.
  const consumed = parseRecord(
    {
      topic: h.topics.leads,
      partition: 0,
      offset: '102',
      key: Buffer.from([0x00, 0xff, 0x01]),
      value: Buffer.from('{"tenant_id":"globex","name":"kept as bytes"}'),
      headers: { 'x-trace': Buffer.from('trace-1') },
      timestamp: String(Date.UTC(2026, 0, 2)),
    },
    { maxBytes: 1024 * 1024, lineageKey: h.lineageKey },
  );
  if (!consumed.ok) throw new Error(`test record rejected: ${consumed.dlq.error}`);
  const withBytes: NewDlqEntry = {
    ...consumed.entry,
    // Stored as bytes only: nothing but raw_bytes can give the value back.
    payloadJson: null,
    rawValue: null,
    rawBytes: consumed.valueBytes,
    error: 'Insert into event_journal failed: simulated (SQLSTATE 23514)',
    reason: 'db_error',
  };
  expect(withBytes.contentHash).toHaveLength(32);
  await insertDlqEntries(
    h.pool,
    [
      {
        ...legacy,
        tenantId: 'acme',
        payloadJson: '{"tenant_id":"acme","name":"fixable"}',
        partition: 0,
        offset: '100',
      },
      {
        ...legacy,
        tenantId: null,
        payloadJson: '{"name":"no tenant anywhere"}',
        partition: 0,
        offset: '101',
        reason: 'missing_tenant',
      },
      withBytes,
    ].map(classified),
  );
  const [fixable, hopeless, fromBytes] = (
    await h.pool.query<{ id: number }>('SELECT id FROM event_dlq ORDER BY id')
  ).rows.map((r) => r.id);

  const first = await retryDue();
  expect(first).toMatchObject({ attempted: 3, resolved: 2, retrying: 1, parked: 0 });
  expect((await resolvedRow(fixable)).row).toMatchObject({
    tenant_id: 'acme',
    topic: h.topics.leads,
    kafka_partition: 0,
    kafka_offset: 100,
    payload: { tenant_id: 'acme', name: 'fixable' },
  });
  // The entry with bytes becomes the record it was: same key bytes, headers, timestamp and content hash.
  const fromBytesRow = await resolvedRow(fromBytes);
  expect(fromBytesRow.row).toMatchObject({
    tenant_id: 'globex',
    topic: h.topics.leads,
    kafka_partition: 0,
    kafka_offset: 102,
    payload: { tenant_id: 'globex', name: 'kept as bytes' },
    kafka_key_bytes: Buffer.from([0x00, 0xff, 0x01]),
    kafka_timestamp: new Date(Date.UTC(2026, 0, 2)),
    replay_count: 0,
  });
  expect(fromBytesRow.row.kafka_headers).toEqual(JSON.parse(withBytes.headersJson!));
  expect(fromBytesRow.row.content_hash).toEqual(fromBytesRow.dlq.content_hash);
  expect(fromBytesRow.row.content_hash).toEqual(withBytes.contentHash);

  const afterFirst = await entry(hopeless);
  expect(afterFirst).toMatchObject({ status: 'retrying', attempts: 1 });
  expect(afterFirst.last_error).toMatch(/no tenant/);

  // Not due yet: 10 minutes of backoff after the first failure.
  await env.sleep('9m');
  expect(await retryDue()).toMatchObject({ attempted: 0, skipped: 0 });
  await env.sleep('2m');
  expect(await retryDue()).toMatchObject({ attempted: 1, retrying: 1 });
  const afterSecond = await entry(hopeless);
  expect(afterSecond.attempts).toBe(2);
  // The second backoff doubles: 20 minutes.
  expect(afterSecond.next_attempt_at.getTime() - afterFirst.next_attempt_at.getTime()).toBeGreaterThanOrEqual(
    20 * 60_000,
  );

  await env.sleep('19m');
  expect(await retryDue()).toMatchObject({ attempted: 0 });
  await env.sleep('2m');
  expect(await retryDue()).toMatchObject({ attempted: 1, parked: 1 });
  expect(await entry(hopeless)).toMatchObject({ status: 'parked', attempts: 3 });

  // Parked entries are left alone by scheduled runs, whatever the time.
  await env.sleep('1d');
  expect(await retryDue()).toMatchObject({ attempted: 0 });
  // The resolved entry keeps its row; nothing is deleted from the DLQ.
  expect((await h.pool.query('SELECT count(*)::int AS n FROM event_dlq')).rows[0].n).toBe(3);
  const audits = await h.pool.query(
    "SELECT count(*)::int AS n FROM replay_audit WHERE kind = 'dlq_retry' AND status = 'completed'",
  );
  expect(audits.rows[0].n).toBe(run);
});

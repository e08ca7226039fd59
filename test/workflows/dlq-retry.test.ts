import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { insertDlqEntries } from '../../repository/event-dlq';
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
    // The test server may skip ahead to a finished workflow's execution timeout; keep that jump small.
    workflowExecutionTimeout: '10s',
  });

const entry = async (id: number) => (await h.pool.query('SELECT * FROM event_dlq WHERE id = $1', [id])).rows[0];

it('resolves what can be journaled now, backs off the rest exponentially and parks it after the maximum', async () => {
  const base = { topic: h.topics.leads, rawValue: null, reason: 'db_error', error: 'simulated outage', key: null };
  await insertDlqEntries(h.pool, [
    { ...base, tenantId: 'acme', payloadJson: '{"tenant_id":"acme","name":"fixable"}', partition: 0, offset: '100' },
    {
      ...base,
      tenantId: null,
      payloadJson: '{"name":"no tenant anywhere"}',
      partition: 0,
      offset: '101',
      reason: 'missing_tenant',
    },
  ]);
  const [fixable, hopeless] = (await h.pool.query<{ id: number }>('SELECT id FROM event_dlq ORDER BY id')).rows.map(
    (r) => r.id,
  );

  const first = await retryDue();
  expect(first).toMatchObject({ attempted: 2, resolved: 1, retrying: 1, parked: 0 });
  const resolved = await entry(fixable);
  expect(resolved).toMatchObject({ status: 'resolved', attempts: 1 });
  const journaled = await h.pool.query('SELECT * FROM event_journal WHERE id = $1', [resolved.resolved_event_id]);
  expect(journaled.rows[0]).toMatchObject({
    tenant_id: 'acme',
    topic: h.topics.leads,
    kafka_partition: 0,
    kafka_offset: 100,
    payload: { tenant_id: 'acme', name: 'fixable' },
  });
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
  expect((await h.pool.query('SELECT count(*)::int AS n FROM event_dlq')).rows[0].n).toBe(2);
  const audits = await h.pool.query(
    "SELECT count(*)::int AS n FROM replay_audit WHERE kind = 'dlq_retry' AND status = 'completed'",
  );
  expect(audits.rows[0].n).toBe(run);
});

import { clusterMember } from '../../bench/support/cluster';
import { ClusterRun, sendTenant, Traffic } from '../support/cluster-run';
import { eventually } from '../support/sink';

/**
 * Cluster fault suite, Temporal: the real Temporal server (SQL persistence on Postgres) is restarted while a range
 * replay publishes and while a bulk DLQ retry journals dead letters, with records streaming in meanwhile. Workflows
 * resume from their histories; the soak's checker (docs/integrity.md) then finds every record in exactly one place,
 * every replayed event journaled once, and no partition left behind.
 */
let c: ClusterRun;

beforeAll(async () => {
  c = await ClusterRun.open('temporal');
}, 41 * 60_000);

afterAll(async () => {
  await clusterMember('start', 'temporal-server').catch(() => undefined);
  await c?.close();
}, 300_000);

it(
  'Temporal server restarted mid-range-replay: the replay resumes and each event is journaled once',
  async () => {
    const scope = await c.scope();
    const tenant = c.tenant('replay-restart');
    const seeded = await sendTenant(c.producer, tenant, 1500);
    await c.journaled(tenant, scope, seeded.length);
    await c.drained();
    const ids = await c.originals(tenant, scope);
    const traffic = new Traffic(c.producer, { rate: 30, hostileShare: 0.1 });
    let workflowId = '';
    try {
      workflowId = await c.startRange(tenant, 60);
      await c.replayPast(workflowId, 150);
      // The server goes away while the replay is still publishing (60 events/s): it is cut in the middle. Its
      // activity may go on publishing while the server is down, so the count that shows the cut is the one taken at
      // the stop, not after the start (a slow start on a busy CI machine outlasted the whole replay).
      await clusterMember('stop', 'temporal-server');
      expect(await c.replayRows(workflowId)).toBeLessThan(ids.length);
      await clusterMember('start', 'temporal-server');
      const status = await c.finished(workflowId);
      expect(status.workflow_status).toBe('COMPLETED');
      expect(status.result).toMatchObject({ matched: ids.length, failed: 0 });
    } finally {
      await traffic.stop();
    }
    const verdict = await c.check([...seeded, ...traffic.produced], [{ workflowId, eventIds: ids }], scope);
    process.stderr.write(`[cluster-faults] temporal restart mid-range-replay: ${JSON.stringify(verdict)}\n`);
    expect(verdict.violations).toEqual([]);
    expect(verdict.replayRows).toBe(ids.length);
  },
  20 * 60_000,
);

it(
  'Temporal server restarted mid-DLQ-retry: every dead letter resolved into exactly one journal row',
  async () => {
    // The scheduled DLQ retry (every 5 min) would race the operator's retry for these entries: paused meanwhile.
    expect(await c.api.call('PATCH', '/dlq/retry-schedule', { paused: true })).toMatchObject({ status: 200 });
    try {
      await dlqRetryScenario();
    } finally {
      await c.api.call('PATCH', '/dlq/retry-schedule', { paused: false });
    }
  },
  20 * 60_000,
);

async function dlqRetryScenario(): Promise<void> {
  const scope = await c.scope();
  const tenant = c.tenant('dlq');
  // Records the journal refuses for now (a CHECK, as a schema change gone wrong would): ingest dead-letters them with
  // db_error; once the CHECK is dropped, a retry journals them.
  const constraint = `cluster_faults_${c.run}`;
  await c.pool.query(
    `ALTER TABLE event_journal ADD CONSTRAINT ${constraint} CHECK (payload->>'poison' IS DISTINCT FROM '${c.run}')`,
  );
  let poisoned: Awaited<ReturnType<typeof sendTenant>> = [];
  try {
    poisoned = await sendTenant(c.producer, tenant, 600, { poison: c.run });
    await c.drained();
  } finally {
    await c.pool.query(`ALTER TABLE event_journal DROP CONSTRAINT IF EXISTS ${constraint}`);
  }
  const deadLetters = async () =>
    (
      await c.pool.query<{ status: string; n: number }>(
        `SELECT status, count(*)::int AS n FROM event_dlq WHERE tenant_id = $1 AND id > $2 GROUP BY status`,
        [tenant, scope.afterDlqId],
      )
    ).rows;
  expect(await deadLetters()).toEqual([{ status: 'pending', n: poisoned.length }]);

  const traffic = new Traffic(c.producer, { rate: 30, hostileShare: 0.1 });
  let workflowId = '';
  try {
    // Five entries a page: over a hundred activity calls, so the restart lands in the middle.
    const started = await c.api.call<{ workflow_id: string; eligible: number }>('POST', '/dlq/bulk', {
      action: 'retry',
      filter: { tenant_id: tenant },
      dry_run: false,
      page_size: 5,
    });
    expect(started).toMatchObject({ status: 202, body: { eligible: poisoned.length } });
    workflowId = started.body.workflow_id;
    const touched = async () =>
      (
        await c.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM event_dlq WHERE bulk_action_id = $1', [
          workflowId,
        ])
      ).rows[0].n;
    await eventually(async () => (await touched()) >= 25, 'the bulk retry under way', 180_000, 200);
    await clusterMember('restart', 'temporal-server');
    expect(await touched()).toBeLessThan(poisoned.length);
    const status = await c.finished(workflowId);
    expect(status.workflow_status).toBe('COMPLETED');
    expect(status.result).toMatchObject({ matched: poisoned.length, counts: { resolved: poisoned.length } });
  } finally {
    await traffic.stop();
  }
  expect(await deadLetters()).toEqual([{ status: 'resolved', n: poisoned.length }]);
  const verdict = await c.check([...poisoned, ...traffic.produced], [], scope);
  process.stderr.write(`[cluster-faults] temporal restart mid-DLQ-retry: ${JSON.stringify(verdict)}\n`);
  expect(verdict.violations).toEqual([]);
  // Each poisoned record: one journal row (the retry's) beside its resolved dead letter.
  expect(verdict.resolvedFromDlq).toBe(poisoned.length);
}

import { Client, Connection } from '@temporalio/client';
import { MockActivityEnvironment, type TestWorkflowEnvironment } from '@temporalio/testing';
import { createActivities } from '../../activities';
import type { NotificationKind } from '../../journal/kinds';
import { subjectHash } from '../../lifecycle/erasure-target';
import { checkDlqGrowth } from '../../notifications/dlq-growth';
import { deliveryWorkflowId, emitNotification, type EmitDeps } from '../../notifications/emit';
import { insertDlqEntries, type NewDlqEntry } from '../../repository/event-dlq';
import { dlqEntry } from '../support/dlq';
import { storeErasureSubject } from '../../repository/erasure';
import { putEndpointRows } from '../../repository/notifications';
import { startAudit } from '../../repository/replay-audit';
import { ensureServiceKey } from '../../repository/service-keys';
import type { NotificationDeliveryResult } from '../../workflows/notification-delivery';
import { uniqueSuffix } from '../support/env';
import type { SinkHarness } from '../support/sink';
import { activityDeps, createTimeSkippingWorld } from '../support/temporal';
import { downReceiverUrl, startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver';

// Notifications with the real activities on the time-skipping server: each test starts its own receiver, points
// one kind at it (PUT /notifications' table) and lets a real emitter (a replay's audit, a DLQ retry, an erasure, the
// growth check) start the deliveries.

const SECRET = 'test-notify-secret-0123456789';
let env: TestWorkflowEnvironment;
let h: SinkHarness;
let close: () => Promise<void>;
const taskQueue = 'notifications-test';
const receivers: WebhookReceiver[] = [];

beforeAll(async () => {
  ({ env, h, close } = await createTimeSkippingWorld('notify', taskQueue, {
    NOTIFY_SIGNING_SECRET: SECRET,
    NOTIFY_MAX_ATTEMPTS: '4',
    NOTIFY_BACKOFF: '10m',
    NOTIFY_DLQ_GROWTH_THRESHOLD: '3',
    NOTIFY_DLQ_GROWTH_WINDOW: '15m',
    DLQ_RETRY_MAX_ATTEMPTS: '1',
  }));
});
afterAll(async () => {
  await Promise.all(receivers.map((r) => r.close()));
  await close?.();
});

async function receiver(failFirst = 0): Promise<WebhookReceiver> {
  const r = await startWebhookReceiver(SECRET, { failFirst });
  receivers.push(r);
  return r;
}

const pointAt = (kind: NotificationKind, urls: string[]) => putEndpointRows(h.pool, { [kind]: urls }, 'test-admin');

/** Waits for the delivery of one notification to one URL (the test server skips its backoff timers). */
const delivered = (notificationId: string, url: string): Promise<NotificationDeliveryResult> =>
  env.client.workflow.getHandle(deliveryWorkflowId(notificationId, url)).result();

const deliveries = async (notificationId: string, url: string) =>
  (
    await h.pool.query(
      `SELECT attempt, status, http_status, error, kind, url FROM notification_deliveries
        WHERE delivery_id = $1 ORDER BY attempt`,
      [deliveryWorkflowId(notificationId, url)],
    )
  ).rows;

const emitDeps = (): EmitDeps => ({
  client: () => env.client,
  taskQueue,
  pool: h.pool,
  log: h.log,
  metrics: h.metrics,
  config: h.config.notifications,
});

/** A dead letter whose value is not JSON: every retry of it fails. */
const deadLetter = (topic: string, over: Partial<NewDlqEntry>) => dlqEntry(topic, { rawValue: 'not json', ...over });

const counter = async (metric: 'notificationsStarted' | 'notificationEmitErrors', labels: Record<string, string>) =>
  (await h.metrics[metric].get()).values.find((v) =>
    Object.entries(labels).every(([k, x]) => (v.labels as Record<string, unknown>)[k] === x),
  )?.value ?? 0;

let run = 0;

it('signs each notification of a replay that completed or failed; the receiver verifies it; a second emit starts nothing', async () => {
  const r = await receiver();
  await pointAt('replay_completed', [r.url]);
  await pointAt('replay_failed', [r.url]);

  const batchId = `notify-batch-${++run}`;
  await env.client.workflow.execute('batchReplayWorkflow', {
    taskQueue,
    workflowId: batchId,
    args: [{ ids: [987_654_321], source: 'batch', requestedBy: 'test-operator' }],
    workflowExecutionTimeout: '1h',
  });
  const singleId = `notify-single-${++run}`;
  await expect(
    env.client.workflow.execute('replayEventWorkflow', {
      taskQueue,
      workflowId: singleId,
      args: [{ eventId: 987_654_321, source: 'operator_api', requestedBy: 'test-operator' }],
      workflowExecutionTimeout: '1h',
    }),
  ).rejects.toThrow();

  expect(await delivered(`replay_completed:${batchId}`, r.url)).toMatchObject({ status: 'delivered', attempts: 1 });
  expect(await delivered(`replay_failed:${singleId}`, r.url)).toMatchObject({ status: 'delivered', attempts: 1 });
  expect(r.received.map((n) => [n.refused, n.answered, n.kind, n.notificationId])).toEqual(
    expect.arrayContaining([
      [undefined, 204, 'replay_completed', `replay_completed:${batchId}`],
      [undefined, 204, 'replay_failed', `replay_failed:${singleId}`],
    ]),
  );
  expect(r.received).toHaveLength(2);
  const completed = r.received.find((n) => n.kind === 'replay_completed')!.json;
  expect(completed).toMatchObject({
    id: `replay_completed:${batchId}`,
    kind: 'replay_completed',
    data: {
      workflow_id: batchId,
      replay_kind: 'batch',
      status: 'completed',
      requested_by: 'test-operator',
      matched: 0,
    },
  });
  const failed = r.received.find((n) => n.kind === 'replay_failed')!.json;
  expect(failed.data).toMatchObject({ workflow_id: singleId, replay_kind: 'single', status: 'failed' });
  expect(String(failed.data.error)).toMatch(/987654321/);
  expect(await deliveries(`replay_completed:${batchId}`, r.url)).toEqual([
    { attempt: 1, status: 'delivered', http_status: 204, error: null, kind: 'replay_completed', url: r.url },
  ]);

  // The same notification emitted again (an activity retried after it emitted) is not delivered twice.
  const duplicates = await counter('notificationsStarted', { kind: 'replay_completed', result: 'duplicate' });
  await emitNotification(emitDeps(), { kind: 'replay_completed', key: batchId, data: { again: true } });
  expect(await counter('notificationsStarted', { kind: 'replay_completed', result: 'duplicate' })).toBe(duplicates + 1);
  expect(r.received).toHaveLength(2);
});

it('retries a receiver that fails twice with exponential backoff, recording every attempt (DLQ group growing)', async () => {
  const r = await receiver(2);
  await pointAt('dlq_group_growing', [r.url]);
  const topic = `growth.${uniqueSuffix()}`;
  await insertDlqEntries(
    h.pool,
    [1, 2, 3].map((n) => deadLetter(topic, { offset: String(n), reason: 'invalid_json' })),
  );
  await insertDlqEntries(h.pool, [deadLetter(topic, { offset: '4', reason: 'missing_tenant' })]);

  const now = Date.now();
  const groups = await checkDlqGrowth(emitDeps(), now);
  const growing = groups.filter((g) => g.topic === topic);
  // Three invalid_json dead letters reach the threshold (3); the single missing_tenant one does not.
  expect(growing).toEqual([expect.objectContaining({ reason: 'invalid_json', topic, count: 3 })]);
  const id = `dlq_group_growing:invalid_json-${topic}-${Math.floor(now / (15 * 60_000))}`;

  expect(await delivered(id, r.url)).toMatchObject({ status: 'delivered', attempts: 3, http_status: 204 });
  expect(await deliveries(id, r.url)).toEqual([
    expect.objectContaining({ attempt: 1, status: 'failed', http_status: 503, error: 'HTTP 503: busy, try later' }),
    expect.objectContaining({ attempt: 2, status: 'failed', http_status: 503, error: 'HTTP 503: busy, try later' }),
    expect.objectContaining({ attempt: 3, status: 'delivered', http_status: 204, error: null }),
  ]);
  expect(r.received.map((n) => [n.refused, n.answered])).toEqual([
    [undefined, 503],
    [undefined, 503],
    [undefined, 204],
  ]);
  expect(r.received[2].json.data).toMatchObject({ reason: 'invalid_json', topic, count: 3, threshold: 3 });

  // Backoff: the workflow waited 10 min, then 20 min (durable timers, skipped by the test server).
  const history = await env.client.workflow.getHandle(deliveryWorkflowId(id, r.url)).fetchHistory();
  const timers = (history.events ?? [])
    .map((e) => e.timerStartedEventAttributes?.startToFireTimeout?.seconds)
    .filter((s) => s !== undefined && s !== null)
    .map(Number);
  expect(timers).toEqual([600, 1200]);

  // Checked again in the same window: the group is told once.
  await checkDlqGrowth(emitDeps(), now + 1000);
  expect(r.received).toHaveLength(3);
});

it('records the final failure when the receiver is down, and the DLQ retry that parked the entry is unaffected', async () => {
  const url = await downReceiverUrl();
  await pointAt('dlq_parked', [url]);
  const [entry] = await insertDlqEntries(h.pool, [
    deadLetter(h.topics.leads, { offset: String(1000 + ++run), rawValue: '{not json', reason: 'invalid_json' }),
  ]);

  const result = await env.client.workflow.execute('dlqRetryWorkflow', {
    taskQueue,
    workflowId: `notify-dlq-${run}`,
    args: [{ source: 'operator_api', entryIds: [entry.id] }],
    workflowExecutionTimeout: '1h',
  });
  expect(result).toMatchObject({ status: 'completed', parked: 1, resolved: 0 });
  const { rows } = await h.pool.query('SELECT status, attempts FROM event_dlq WHERE id = $1', [entry.id]);
  expect(rows[0]).toEqual({ status: 'parked', attempts: 1 });

  const id = `dlq_parked:${entry.id}-1`;
  expect(await delivered(id, url)).toMatchObject({ status: 'abandoned', attempts: 4, http_status: null });
  const attempts = await deliveries(id, url);
  expect(attempts.map((a) => [a.attempt, a.status, a.http_status])).toEqual([
    [1, 'failed', null],
    [2, 'failed', null],
    [3, 'failed', null],
    [4, 'abandoned', null],
  ]);
  for (const a of attempts) expect(a.error).toMatch(/ECONNREFUSED/);
});

it('tells a completed erasure with its counts, never its subject', async () => {
  const r = await receiver();
  await pointAt('erasure_completed', [r.url]);
  const target = { kind: 'tenant' as const, value: `gone-${uniqueSuffix()}` };
  const hash = subjectHash(await ensureServiceKey(h.pool, 'erasure'), target);
  await storeErasureSubject(h.pool, hash, target);
  const erasureId = `notify-erasure-${++run}`;
  await env.client.workflow.execute('erasureWorkflow', {
    taskQueue,
    workflowId: erasureId,
    args: [{ subjectHash: hash, requestedBy: 'test-admin' }],
    workflowExecutionTimeout: '1h',
  });

  expect(await delivered(`erasure_completed:${erasureId}`, r.url)).toMatchObject({ status: 'delivered' });
  expect(r.received).toHaveLength(1);
  expect(r.received[0].refused).toBeUndefined();
  expect(r.received[0].json.data).toEqual({
    erasure_id: erasureId,
    journal_rows: 0,
    dlq_rows: 0,
    archive_segments: 0,
    archive_rows: 0,
  });
  expect(r.received[0].body).not.toContain(target.value);
  expect(r.received[0].body).not.toContain(hash);
});

it('a notification Temporal does not accept is logged and counted, and the activity that emitted it completes', async () => {
  const r = await receiver();
  await pointAt('replay_completed', [r.url]);
  const workflowId = `notify-unreachable-${++run}`;
  await startAudit(h.pool, { workflowId, runId: 'r1', kind: 'batch', source: 'batch' });
  // A client of a Temporal that is not there: every start fails (refused, or the emitter's own 5 s bound).
  const deadClient = new Client({ connection: Connection.lazy({ address: '127.0.0.1:1', connectTimeout: '1s' }) });
  const activities = createActivities(activityDeps(h));
  const errors = await counter('notificationEmitErrors', { kind: 'replay_completed' });

  await new MockActivityEnvironment({ taskQueue }, { client: deadClient }).run(activities.recordReplayFinished, {
    workflowId,
    status: 'completed' as const,
    matched: 1,
    published: 1,
    failed: 0,
  });

  const { rows } = await h.pool.query('SELECT status FROM replay_audit WHERE workflow_id = $1', [workflowId]);
  expect(rows[0].status).toBe('completed');
  expect(await counter('notificationEmitErrors', { kind: 'replay_completed' })).toBe(errors + 1);
  expect(r.received).toHaveLength(0);
  // Its connection is left to the process's end: closing it under the client's own retries throws from a timer.
});

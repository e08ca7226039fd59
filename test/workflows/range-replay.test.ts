import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { WorkflowFailedError } from '@temporalio/client';
import { ensureTopics } from '../../shared/kafka';
import { pauseSignal, progressQuery, resumeSignal, type RangeReplayInput } from '../../workflows/definitions';
import { CALLS_PER_RUN } from '../../workflows/range-replay';
import { readTopic, seedJournal, topicSize } from '../support/journal';
import { eventually, type SinkHarness } from '../support/sink';
import { createTimeSkippingWorld } from '../support/temporal';

let env: TestWorkflowEnvironment;
let h: SinkHarness;
let close: () => Promise<void>;
let ids: number[];
const taskQueue = 'range-replay-test';

const window = { start: '2020-01-01T00:00:00Z', end: '2030-01-01T00:00:00Z' };
const target = (name: string) => `${h.topics.leads}.${name}`;

beforeAll(async () => {
  ({ env, h, close } = await createTimeSkippingWorld('range', taskQueue));
  ids = await seedJournal(h.pool, 1200, { topics: [h.topics.leads, h.topics.jobs] });
});
afterAll(() => close?.());

const start = (workflowId: string, input: Partial<RangeReplayInput>) =>
  env.client.workflow.start('rangeReplayWorkflow', {
    taskQueue,
    workflowId,
    args: [{ ...window, source: 'range', ...input }],
  });

const audit = async (workflowId: string) =>
  (await h.pool.query('SELECT * FROM replay_audit WHERE workflow_id = $1', [workflowId])).rows[0];

it('dry run counts by topic and tenant and publishes nothing', async () => {
  const topic = target('dry');
  await ensureTopics(h.kafka, [topic], 3);
  const result = await (
    await start('replay-range-dry', { dryRun: true, targetTopic: topic, tenantId: 'acme' })
  ).result();
  expect(result).toMatchObject({ status: 'dry_run', matched: 400 });
  expect(result.by_tenant).toEqual({ acme: 400 });
  expect(Object.values(result.by_topic as Record<string, number>).reduce((a, b) => a + b, 0)).toBe(400);
  expect(await topicSize(h.kafka, topic)).toBe(0);
  expect(await audit('replay-range-dry')).toMatchObject({
    kind: 'range',
    status: 'completed',
    matched: 400,
    published: 0,
  });
});

it('continues as new on a long range with no page missed or repeated', async () => {
  const topic = target('long');
  await ensureTopics(h.kafka, [topic], 3);
  const pageSize = 5; // 1200 events = 240 pages, one per call > CALLS_PER_RUN
  expect(1200 / pageSize).toBeGreaterThan(CALLS_PER_RUN);
  const handle = await start('replay-range-long', { targetTopic: topic, pageSize, pagesPerCall: 1 });
  const result = await handle.result();
  expect(result).toMatchObject({ status: 'completed', matched: 1200, published: 1200, failed: 0, pages: 241 });
  const described = await handle.describe();
  expect(described.runId).not.toBe(handle.firstExecutionRunId); // it continued as new at least once
  const messages = await readTopic(h.kafka, topic, 1200);
  const replayedFrom = messages.map((m) => m._replayed_from_event_id as number).sort((a, b) => a - b);
  expect(replayedFrom).toEqual(ids); // every event once, none twice
  expect(messages.every((m) => m._replay_id === 'replay-range-long' && m._replay_source === 'range')).toBe(true);
  expect(await audit('replay-range-long')).toMatchObject({ status: 'completed', matched: 1200, published: 1200 });
});

it('replays several pages per activity call, within pagesPerCall', async () => {
  const topic = target('chunks');
  await ensureTopics(h.kafka, [topic], 3);
  const handle = await start('replay-range-chunks', {
    targetTopic: topic,
    tenantId: 'acme',
    pageSize: 40,
    pagesPerCall: 4,
  });
  const result = await handle.result();
  expect(result).toMatchObject({ status: 'completed', matched: 400, published: 400, pages: 11 }); // 10 full, 1 empty
  const { events } = await handle.fetchHistory();
  const chunkCalls = new Set(
    events!
      .filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'replayRangePage')
      .map((e) => String(e.eventId)),
  );
  const chunks = events!
    .map((e) => e.activityTaskCompletedEventAttributes)
    .filter((a) => a && chunkCalls.has(String(a.scheduledEventId)))
    .map((a) => JSON.parse(Buffer.from(a!.result!.payloads![0].data!).toString()) as { pages: number });
  expect(chunks.reduce((sum, c) => sum + c.pages, 0)).toBe(11);
  expect(chunks.every((c) => c.pages <= 4)).toBe(true);
  expect(chunks.length).toBeLessThan(11); // 3 unless a page outlasts the 2 s budget
  expect(await topicSize(h.kafka, topic)).toBe(400);
});

it('filters by tenant and topic, originals only by default', async () => {
  const topic = target('filtered');
  await ensureTopics(h.kafka, [topic], 3);
  const [expected] = (
    await h.pool.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM event_journal WHERE tenant_id = $1 AND topic = $2 AND replay_count = 0',
      ['globex', h.topics.jobs],
    )
  ).rows;
  const result = await (
    await start('replay-range-filtered', { targetTopic: topic, tenantId: 'globex', topic: h.topics.jobs })
  ).result();
  expect(result).toMatchObject({ status: 'completed', published: expected.n });
  const messages = await readTopic(h.kafka, topic, expected.n);
  expect(messages).toHaveLength(expected.n);
  expect(new Set(messages.map((m) => m.tenant_id))).toEqual(new Set(['globex']));
});

it('pauses, stays paused while time passes, resumes and completes', async () => {
  const topic = target('paused');
  await ensureTopics(h.kafka, [topic], 3);
  const handle = await start('replay-range-paused', { targetTopic: topic, tenantId: 'initech', pageSize: 50 });
  await handle.signal(pauseSignal);
  const paused = await eventually(async () => {
    const p = await handle.query(progressQuery);
    return p.status === 'paused' ? p : undefined;
  }, 'the replay to report paused');
  await env.sleep('2h');
  const later = await handle.query(progressQuery);
  expect(later.status).toBe('paused');
  expect(later.published).toBe(paused!.published);
  expect(later.published).toBeLessThan(400);
  await handle.signal(resumeSignal);
  const result = await handle.result();
  expect(result).toMatchObject({ status: 'completed', published: 400 });
  expect(await topicSize(h.kafka, topic)).toBe(400);
});

it('is cancelled by an operator and audited as cancelled', async () => {
  const handle = await start('replay-range-cancelled', { targetTopic: target('cancelled'), pageSize: 50 });
  await handle.signal(pauseSignal);
  await eventually(async () => (await handle.query(progressQuery)).status === 'paused', 'paused');
  await handle.cancel();
  const err = await handle.result().catch((e: unknown) => e);
  expect(err).toBeInstanceOf(WorkflowFailedError);
  expect((err as WorkflowFailedError).cause?.name).toBe('CancelledFailure');
  expect(await audit('replay-range-cancelled')).toMatchObject({ status: 'cancelled', error: 'cancelled by operator' });
});

it('honours maxEventsPerSecond with durable timers', async () => {
  const topic = target('rate');
  await ensureTopics(h.kafka, [topic], 3);
  const before = await env.currentTimeMs();
  const result = await (
    await start('replay-range-rate', { targetTopic: topic, tenantId: 'acme', maxEventsPerSecond: 10 })
  ).result();
  const elapsedSeconds = ((await env.currentTimeMs()) - before) / 1000;
  expect(result).toMatchObject({ status: 'completed', published: 400, maxEventsPerSecond: 10 });
  expect(elapsedSeconds).toBeGreaterThanOrEqual(39); // 400 events at 10/s: at least 39 s of (skipped) workflow time
});

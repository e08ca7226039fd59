import { WorkflowFailedError, type Client } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { createActivities } from '../../activities';
import { ensureTopics } from '../../shared/kafka';
import {
  pauseSignal,
  progressQuery,
  resumeSignal,
  setRateSignal,
  type RangeReplayInput,
  type ReplayProgress,
} from '../../workflows/definitions';
import { CALLS_PER_RUN } from '../../workflows/range-replay';
import { readTopic } from '../support/journal';
import {
  collapseRepeats,
  keyOrders,
  partlyFailingProducer,
  seedInterleavedKeys,
  type PartialSendFailure,
} from '../support/partial-send';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';
import { activityDeps, closedStatuses, testServerPath, workflowBundle } from '../support/temporal';

/**
 * The coordinator of a sharded range replay (time-skipping, real activities on Postgres and Kafka): a range at or above
 * the threshold is split into child workflows by id range, or by key hash under per_key; every matching event goes
 * out once under the parent's replay id; pause, resume, a new rate and cancel reach every child; each child continues
 * as new on its own; below the threshold nothing changes.
 */
let env: TestWorkflowEnvironment;
let h: SinkHarness;
let worker: Worker;
let running: Promise<void>;
let ids: number[];
const taskQueue = 'sharded-replay-test';
const KEYS = ['lead-a', 'lead-b', 'lead-c', 'lead-d', 'lead-e', 'lead-f'];
const EVENTS = 600;
const window = { start: '2000-01-01T00:00:00Z', end: '2100-01-01T00:00:00Z' };
const sharding = { threshold: 100, shards: 4 };

/** The failure injected into sends (test/support/partial-send.ts). */
const failure: PartialSendFailure = { at: undefined, failed: 0 };

beforeAll(async () => {
  env = await TestWorkflowEnvironment.createTimeSkipping({
    server: { executable: { type: 'existing-path', path: testServerPath() } },
  });
  h = await createSinkHarness('sharded');
  worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowBundle: await workflowBundle(),
    activities: createActivities(activityDeps(h, partlyFailingProducer(h, failure))),
  });
  running = worker.run();
  ids = await seedInterleavedKeys(h.pool, h.topics.leads, EVENTS, KEYS, 7);
}, 120_000);

afterAll(async () => {
  worker?.shutdown();
  await running;
  await h?.close();
  await env?.teardown();
});

async function target(name: string): Promise<string> {
  const topic = `${h.topics.leads}.${name}`;
  await ensureTopics(h.kafka, [topic], 3);
  return topic;
}

const start = (client: Client, workflowId: string, input: Partial<RangeReplayInput>) =>
  client.workflow.start('rangeReplayWorkflow', {
    taskQueue,
    workflowId,
    args: [{ ...window, source: 'range', ...input }],
  });

/** The child workflows a coordinator started, from its history. */
async function childIds(client: Client, workflowId: string): Promise<string[]> {
  return (await childRuns(client, workflowId)).map((run) => run.workflowId);
}

/** The child workflows a coordinator has started, each with the id of its first run. */
async function childRuns(client: Client, workflowId: string) {
  const { events } = await client.workflow.getHandle(workflowId).fetchHistory();
  return events!
    .map((e) => e.childWorkflowExecutionStartedEventAttributes?.workflowExecution)
    .filter((run) => run !== undefined && run !== null)
    .map((run) => ({ workflowId: run.workflowId!, firstRunId: run.runId! }));
}

const audits = async (prefix: string) =>
  (await h.pool.query('SELECT * FROM replay_audit WHERE workflow_id LIKE $1', [`${prefix}%`])).rows;

it('splits a range above the threshold into id-range children: every event once, under the parent replay id', async () => {
  const topic = await target('by-id');
  const handle = await start(env.client, 'replay-range-sharded-id', { targetTopic: topic, sharding, pageSize: 25 });
  const result = await handle.result();
  expect(result).toMatchObject({ status: 'completed', matched: EVENTS, published: EVENTS, failed: 0 });
  const children = await childIds(env.client, 'replay-range-sharded-id');
  expect(children).toEqual([0, 1, 2, 3].map((i) => `replay-range-sharded-id-shard-${i}`));
  const shards = (result as ReplayProgress).shards!;
  expect(shards.map((s) => s.matched)).toEqual([150, 150, 150, 150]); // cut by matching rows, not by id span
  expect(shards.every((s) => s.status === 'completed' && s.published === s.matched)).toBe(true);
  for (const id of children) {
    expect((await env.client.workflow.getHandle(id).describe()).status.name).toBe('COMPLETED');
  }
  const messages = await readTopic(h.kafka, topic, EVENTS);
  expect(messages.map((m) => m._replayed_from_event_id as number).sort((a, b) => a - b)).toEqual(ids);
  expect(new Set(messages.map((m) => m._replay_id))).toEqual(new Set(['replay-range-sharded-id']));
  // One audit row, the parent's: the children are reached only through it.
  expect(await audits('replay-range-sharded-id')).toEqual([
    expect.objectContaining({ workflow_id: 'replay-range-sharded-id', status: 'completed', published: EVENTS }),
  ]);
});

it('below the threshold it runs as one workflow, as before', async () => {
  const topic = await target('unsharded');
  const handle = await start(env.client, 'replay-range-unsharded', {
    targetTopic: topic,
    sharding: { threshold: EVENTS + 1, shards: 4 },
    pageSize: 100,
  });
  const result = await handle.result();
  expect(result).toMatchObject({ status: 'completed', matched: EVENTS, published: EVENTS });
  expect((result as ReplayProgress).shards).toBeUndefined();
  expect(await childIds(env.client, 'replay-range-unsharded')).toEqual([]);
});

it('per_key shards by key hash: each key in journal order through a partial send and its retry', async () => {
  const topic = await target('per-key');
  failure.at = ids[301]; // in the middle of a page of some child
  const result = await (
    await start(env.client, 'replay-range-sharded-key', {
      targetTopic: topic,
      sharding,
      ordering: 'per_key',
      pageSize: 12,
      pagesPerCall: 2,
    })
  ).result();
  expect(failure.failed).toBe(1);
  expect(result).toMatchObject({ status: 'completed', matched: EVENTS, published: EVENTS, failed: 0 });
  const shards = (result as ReplayProgress).shards!;
  expect(shards.length).toBeGreaterThan(1);
  expect(shards.reduce((sum, s) => sum + s.matched, 0)).toBe(EVENTS);
  const { journal, seen: got } = await keyOrders(h.pool, h.kafka, topic, ids, EVENTS);
  for (const [key, order] of journal) {
    const seen = got.get(key)!;
    // Adjacent repeats dropped: at most the failed wave's event of a key, once more, back to back.
    expect({ key, ids: collapseRepeats(seen) }).toEqual({ key, ids: order });
    expect(seen.length - order.length).toBeLessThanOrEqual(1);
  }
});

it('forwards pause, resume and a rate split across the children still running; cancel reaches them all', async () => {
  const topic = await target('controls');
  const handle = await start(env.client, 'replay-range-sharded-controls', {
    targetTopic: topic,
    sharding,
    pageSize: 10,
    maxEventsPerSecond: 8,
  });
  const children = await eventually(async () => {
    const found = await childIds(env.client, 'replay-range-sharded-controls');
    return found.length === 4 ? found : undefined;
  }, 'four children');
  const childProgress = () => Promise.all(children.map((id) => env.client.workflow.getHandle(id).query(progressQuery)));
  expect((await childProgress()).map((p) => p.maxEventsPerSecond)).toEqual([2, 2, 2, 2]);

  await handle.signal(pauseSignal);
  await eventually(async () => (await childProgress()).every((p) => p.status === 'paused'), 'every child paused');
  const parent = await handle.query(progressQuery);
  expect(parent.status).toBe('paused');
  expect(parent.shards!.map((s) => s.status)).toEqual(['paused', 'paused', 'paused', 'paused']);

  await handle.signal(setRateSignal, 40);
  await eventually(
    async () => (await childProgress()).every((p) => p.maxEventsPerSecond === 10),
    'the new rate split in four',
  );
  expect((await handle.query(progressQuery)).maxEventsPerSecond).toBe(40);
  await handle.signal(resumeSignal);
  await eventually(async () => (await childProgress()).every((p) => p.status === 'running'), 'every child resumed');

  await handle.cancel();
  const err = await handle.result().catch((e: unknown) => e);
  expect(err).toBeInstanceOf(WorkflowFailedError);
  expect(await closedStatuses(env.client, children)).toEqual(children.map(() => 'CANCELLED'));
  expect(await audits('replay-range-sharded-controls')).toEqual([
    expect.objectContaining({ status: 'cancelled', error: 'cancelled by operator' }),
  ]);
});

it('each child continues as new on its own, and nothing is missed or repeated', async () => {
  const topic = await target('long');
  const pageSize = 1; // 300 one-page calls per child > CALLS_PER_RUN
  expect(EVENTS / 2 / pageSize).toBeGreaterThan(CALLS_PER_RUN);
  const result = await (
    await start(env.client, 'replay-range-sharded-long', {
      targetTopic: topic,
      sharding: { threshold: 100, shards: 2 },
      pageSize,
      pagesPerCall: 1,
    })
  ).result();
  expect(result).toMatchObject({ status: 'completed', matched: EVENTS, published: EVENTS });
  const runs = await childRuns(env.client, 'replay-range-sharded-long');
  expect(runs).toHaveLength(2);
  for (const { workflowId, firstRunId } of runs) {
    const described = await env.client.workflow.getHandle(workflowId).describe();
    expect(described.runId).not.toBe(firstRunId); // continued as new
  }
  const messages = await readTopic(h.kafka, topic, EVENTS);
  expect(messages.map((m) => m._replayed_from_event_id as number).sort((a, b) => a - b)).toEqual(ids);
}, 300_000); // 600 one-page activity calls

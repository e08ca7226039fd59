import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { createActivities } from '../../activities';
import { ensureTopics } from '../../shared/kafka';
import { pauseSignal, progressQuery, type ReplayProgress } from '../../workflows/definitions';
import { seedInterleavedKeys } from '../support/partial-send';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';
import { activityDeps, closedStatuses, testServerPath, workflowBundle } from '../support/temporal';

/**
 * Attack on issue 14 point 3 ("one progress view" of a sharded range replay, which never goes backwards). The
 * coordinator answers the progress query from the moment it takes over (workflows/range-shards.ts), while it still
 * plans the shards: with no child yet, its cursor was the range's pinned maxId, as if every id were done. Once the
 * children started, the cursor was the lowest of theirs (the first shard's start, 0), and GET /replays/:id showed the
 * cursor falling from the end of the range to its beginning.
 *
 * Time-skipping server, real activities on Postgres and Kafka; planShards is held until the first query has been
 * answered (it runs unchanged then), as a large range's ntile query holds it for a while. The pause only keeps the
 * children where they start, so that the second answer does not depend on how fast they run.
 */
let env: TestWorkflowEnvironment;
let h: SinkHarness;
let worker: Worker;
let running: Promise<void>;
let ids: number[];
let releasePlan!: () => void;
const planHeld = new Promise<void>((resolve) => (releasePlan = resolve));
const taskQueue = 'attack14-sharded-progress';

beforeAll(async () => {
  env = await TestWorkflowEnvironment.createTimeSkipping({
    server: { executable: { type: 'existing-path', path: testServerPath() } },
  });
  h = await createSinkHarness('attack14progress');
  const activities = createActivities(activityDeps(h));
  worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowBundle: await workflowBundle(),
    activities: {
      ...activities,
      planShards: async (...args: Parameters<typeof activities.planShards>) => {
        await planHeld;
        return activities.planShards(...args);
      },
    },
  });
  running = worker.run();
  ids = await seedInterleavedKeys(h.pool, h.topics.leads, 40, ['lead-a', 'lead-b', 'lead-c'], 5);
}, 120_000);

afterAll(async () => {
  releasePlan();
  worker?.shutdown();
  await running;
  await h?.close();
  await env?.teardown();
});

it('the progress cursor of a sharded replay never moves back', async () => {
  const topic = `${h.topics.leads}.attack14`;
  await ensureTopics(h.kafka, [topic], 3);
  const workflowId = 'replay-range-attack14-progress';
  const handle = await env.client.workflow.start('rangeReplayWorkflow', {
    taskQueue,
    workflowId,
    args: [
      {
        start: '2000-01-01T00:00:00Z',
        end: '2100-01-01T00:00:00Z',
        source: 'range',
        targetTopic: topic,
        sharding: { threshold: 10, shards: 4 },
        pageSize: 5,
      },
    ],
  });
  // The coordinator has taken over and is planning its shards.
  const planning = await eventually(
    () => handle.query(progressQuery).catch(() => undefined),
    'the coordinator answers the progress query',
  );
  await handle.signal(pauseSignal);
  releasePlan();
  const children = await eventually(async () => {
    const p = await handle.query(progressQuery);
    return p.shards && p.shards.length > 0 ? p : undefined;
  }, 'the children started');

  const view = (p: ReplayProgress) => ({ published: p.published, cursor: p.cursor });
  // While the shards are planned nothing is done: not the range's maxId (as it was), which the children's cursors,
  // starting at the first shard's start, then fell back from.
  expect(view(planning)).toEqual({ published: 0, cursor: 0 });
  expect(ids.length).toBe(40);
  // Expected: no later answer shows less progress than an earlier one.
  expect(children.published).toBeGreaterThanOrEqual(planning.published);
  expect(children.cursor).toBeGreaterThanOrEqual(planning.cursor);

  await handle.cancel();
  await handle.result().catch(() => undefined);
  expect(await closedStatuses(env.client, [workflowId])).toEqual(['CANCELLED']);
});

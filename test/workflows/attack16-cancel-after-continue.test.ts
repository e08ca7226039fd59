import { WorkflowFailedError } from '@temporalio/client';
import { ensureTopics } from '../../shared/kafka';
import { progressQuery } from '../../workflows/definitions';
import { CALLS_PER_RUN } from '../../workflows/range-replay';
import { seedInterleavedKeys } from '../support/partial-send';
import { eventually } from '../support/sink';
import { closedStatuses, createTimeSkippingWorld } from '../support/temporal';

/**
 * Adversarial review 16, sharded range replay cancelled after its children continued as new (commit 0b5eaf7).
 *
 * Invariant: cancelling a sharded replay cancels every child, and the audit row of the cancelled replay counts what
 * the children counted: audit.published == the sum of the children's own final published counts (docs/integrity.md
 * §5; README "Sharded range replay").
 *
 * Attack: children replay one event per activity call, so each continues as new after CALLS_PER_RUN calls; once every
 * child is in its second run, the coordinator is cancelled. Holds (3 runs of 3, time-skipping server).
 */
let world: Awaited<ReturnType<typeof createTimeSkippingWorld>>;
const taskQueue = 'attack16-cancel-after-continue';
const PER_CHILD = 3 * CALLS_PER_RUN; // three runs of one-event calls each
const window = { start: '2000-01-01T00:00:00Z', end: '2100-01-01T00:00:00Z' };

beforeAll(async () => {
  world = await createTimeSkippingWorld('attack16-can', taskQueue);
  await seedInterleavedKeys(world.h.pool, world.h.topics.leads, 2 * PER_CHILD, ['k-a', 'k-b', 'k-c'], 5);
}, 120_000);

afterAll(() => world?.close());

it('cancels children that continued as new, and its audit row counts what they counted', async () => {
  const { client } = world.env;
  const topic = `${world.h.topics.leads}.after-continue`;
  await ensureTopics(world.h.kafka, [topic], 3);
  const workflowId = 'replay-range-attack16-after-continue';
  const handle = await client.workflow.start('rangeReplayWorkflow', {
    taskQueue,
    workflowId,
    args: [
      {
        ...window,
        source: 'range',
        targetTopic: topic,
        sharding: { threshold: 100, shards: 2 },
        pageSize: 1,
        pagesPerCall: 1,
      },
    ],
  });
  const children = [0, 1].map((i) => `${workflowId}-shard-${i}`);
  const firstRuns = await eventually(async () => {
    const runs = await Promise.all(
      children.map((id) =>
        client.workflow
          .getHandle(id)
          .describe()
          .then((d) => d.runId)
          .catch(() => undefined),
      ),
    );
    return runs.every((r) => r !== undefined) ? runs : undefined;
  }, 'both children started');
  // Both children in a later run (continued as new), still running.
  await eventually(
    async () => {
      const described = await Promise.all(children.map((id) => client.workflow.getHandle(id).describe()));
      return described.every((d, i) => d.runId !== firstRuns[i] && d.status.name === 'RUNNING');
    },
    'both children continued as new',
    120_000,
    50,
  );

  await handle.cancel();
  const err = await handle.result().catch((e: unknown) => e);
  expect(err).toBeInstanceOf(WorkflowFailedError);
  // Every child was cancelled with the replay, not left to run on.
  expect(await closedStatuses(client, children)).toEqual(['CANCELLED', 'CANCELLED']);

  const own = await Promise.all(children.map((id) => client.workflow.getHandle(id).query(progressQuery)));
  const { rows } = await world.h.pool.query<{ status: string; published: number }>(
    'SELECT status, published FROM replay_audit WHERE workflow_id = $1',
    [workflowId],
  );
  expect(rows).toEqual([
    expect.objectContaining({ status: 'cancelled', published: own.reduce((sum, p) => sum + p.published, 0) }),
  ]);
}, 300_000);

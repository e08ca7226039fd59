import { progressQuery, type ReplayProgress } from '../../workflows/definitions';
import { closedWorkflow, json, replayRowsOf, type ApiEnv, type WorkflowDetail } from '../support/api';
import { createShardedApiEnv, settled, type ShardedApiEnv } from '../support/sharded-api';
import { eventually } from '../support/sink';

/**
 * Adversarial review 15, sharded range replay progress (commit a814ae2).
 *
 * Invariant: the counts GET /replays/:id shows for one replay never go backwards between two reads, including across
 * a cancel, and the audit row of a cancelled replay counts what it published (docs/integrity.md §3, "Accounting").
 *
 * Attack: since a814ae2 a child reports to its coordinator only once 5% of its running time has passed (no 10-minute
 * cap any more), and GET /replays/:id shows the children's own counts while they run. But when the replay is
 * cancelled, the coordinator records the audit row from the reports its history holds (coordinateShards' catch:
 * `progress()`), not from what the children published: the API showed N published while the replay ran, and once it
 * is cancelled shows an audit row with fewer, although every one of the N was sent and journaled. The longer the
 * replay ran, the larger the gap (a child that ran a day reports every ~70 minutes).
 *
 * The ground truth is the journal: every replayed record comes back through the ingest consumer as a replay row.
 */
let env: ApiEnv;
let leads: string;
let window: { start: string; end: string };
let post: ShardedApiEnv['post'];
const EVENTS = 30;

beforeAll(async () => {
  ({ env, window, post } = await createShardedApiEnv('attack15-cancel-counts', 3, EVENTS));
  leads = env.h.topics.leads;
});

afterAll(() => env?.close());

const detailOf = async (workflowId: string) => {
  const res = await env.app.inject({ method: 'GET', url: `/replays/${encodeURIComponent(workflowId)}` });
  expect(res.statusCode).toBe(200);
  return json<WorkflowDetail & { progress: ReplayProgress | null }>(res);
};

const ownPublished = async (childIds: string[]) =>
  (await Promise.all(childIds.map((id) => env.client.workflow.getHandle(id).query(progressQuery)))).reduce(
    (sum, p) => sum + p.published,
    0,
  );

it('records in the audit row of a cancelled sharded replay what its children published, not their last reports', async () => {
  const res = await post('/replay/range', { ...window, topic: leads, max_events_per_second: 3 });
  expect(res.statusCode).toBe(202);
  const workflowId = json<{ workflow_id: string }>(res).workflow_id;
  const coordinator = env.client.workflow.getHandle(workflowId);
  const childIds = [0, 1, 2].map((i) => `${workflowId}-shard-${i}`);

  // A first report reaches the coordinator (after 5 s); the children go on sending one event a second each.
  await eventually(
    async () => ((await coordinator.query(progressQuery).catch(() => undefined))?.published ?? 0) > 0,
    'a first report to the coordinator',
  );
  await new Promise((resolve) => setTimeout(resolve, 2_000));
  expect((await post(`/replays/${workflowId}/pause`)).statusCode).toBe(202);
  // Paused, and the page each may have had in flight done: their counts no longer move.
  const paused = await settled(() => ownPublished(childIds), 'the children’s counts to settle after the pause', 1_500);

  // Read 1: the running replay's view, the children's own counts.
  const running = await detailOf(workflowId);
  expect(running.progress?.published).toBe(paused);
  // The control: the coordinator's copy is behind.
  expect((await coordinator.query(progressQuery)).published).toBeLessThan(paused);

  expect((await post(`/replays/${workflowId}/cancel`)).statusCode).toBe(202);
  const closed = await closedWorkflow(env.app, workflowId);
  expect(closed.workflow_status).toBe('CANCELLED');
  // Every event the children published came back as a replay row of this replay.
  const journaled = await eventually(async () => {
    const rows = await replayRowsOf(env.h, workflowId);
    return rows.length >= paused ? rows : undefined;
  }, 'the published replays to be journaled');
  expect(journaled).toHaveLength(paused);

  // Read 2: the cancelled replay's audit row. It counts what was published, and never less than read 1 showed.
  expect(closed.audit).toMatchObject({ status: 'cancelled', published: paused });
});

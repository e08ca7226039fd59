import { lineageProof, toReplayMessage } from '../../journal/lineage';
import { replayRows } from '../../repository/event-journal';
import { progressQuery, type ReplayProgress } from '../../workflows/definitions';
import { closedWorkflow, json, publishedBy, replayRowsOf, type ApiEnv, type WorkflowDetail } from '../support/api';
import { eventually } from '../support/sink';
import { createShardedApiEnv, type ShardedApiEnv } from '../support/sharded-api';
import { closedStatuses } from '../support/temporal';

/**
 * A sharded range replay through the API, on the dev server with a real worker and the ingest consumer: a range above
 * REPLAY_SHARD_THRESHOLD runs as REPLAY_SHARDS child workflows behind one replay id. GET /replays/:id shows one
 * progress view with its shards; pause, resume, rate and cancel on the replay reach every child; the children
 * themselves are not reachable through the API. Every matching event is republished and journaled once for the replay,
 * with the same lineage, byte for byte, as an unsharded replay sends.
 */
let env: ApiEnv;
let leads: string;
let ids: number[];
let window: { start: string; end: string };
let post: ShardedApiEnv['post'];
const EVENTS = 30;

beforeAll(async () => {
  ({ env, window, ids, post } = await createShardedApiEnv('api-sharded', 3, EVENTS));
  leads = env.h.topics.leads;
});

afterAll(() => env?.close());

const get = (url: string) => env.app.inject({ method: 'GET', url });

async function startRange(body: Record<string, unknown>): Promise<string> {
  const res = await post('/replay/range', { ...window, topic: leads, ...body });
  expect(res.statusCode).toBe(202);
  return json<{ workflow_id: string }>(res).workflow_id;
}

const progressOf = async (workflowId: string) => {
  const res = await get(`/replays/${encodeURIComponent(workflowId)}`);
  expect(res.statusCode).toBe(200);
  return json<WorkflowDetail & { progress: ReplayProgress | null }>(res).progress;
};

/** Each child's own progress, asked of the child itself (not through the API, which does not reach it). */
const childrenProgress = (childIds: string[]) =>
  Promise.all(childIds.map((id) => env.client.workflow.getHandle(id).query(progressQuery)));

it('shows one progress view, reaches every child with pause, rate, resume and cancel, and hides the children', async () => {
  const workflowId = await startRange({ max_events_per_second: 3 });
  const progress = await eventually(async () => {
    const p = await progressOf(workflowId);
    return p?.shards?.length === 3 ? p : undefined;
  }, 'the progress view with three shards');
  expect(progress).toMatchObject({ status: 'running', matched: EVENTS, maxEventsPerSecond: 3 });
  expect(progress!.shards!.map((s) => s.maxEventsPerSecond)).toEqual([1, 1, 1]);
  expect(progress!.shards!.reduce((sum, s) => sum + s.matched, 0)).toBe(EVENTS);
  const childIds = progress!.shards!.map((s) => s.workflow_id);
  expect(childIds).toEqual([0, 1, 2].map((i) => `${workflowId}-shard-${i}`));

  // The children carry the parent's prefix but have no audit row: the API answers 404, as for anyone's workflow.
  expect((await get(`/replays/${childIds[0]}`)).statusCode).toBe(404);
  for (const action of ['pause', 'resume', 'cancel']) {
    expect((await post(`/replays/${childIds[1]}/${action}`)).statusCode).toBe(404);
  }
  expect((await post(`/replays/${childIds[2]}/rate`, { max_events_per_second: 5 })).statusCode).toBe(404);

  expect((await post(`/replays/${workflowId}/pause`)).statusCode).toBe(202);
  await eventually(
    async () => (await childrenProgress(childIds)).every((p) => p.status === 'paused'),
    'every child paused',
  );
  expect(await progressOf(workflowId)).toMatchObject({ status: 'paused' });

  expect((await post(`/replays/${workflowId}/rate`, { max_events_per_second: 30 })).statusCode).toBe(202);
  await eventually(
    async () => (await childrenProgress(childIds)).every((p) => p.maxEventsPerSecond === 10),
    'the new rate split in three',
  );
  expect(await progressOf(workflowId)).toMatchObject({ maxEventsPerSecond: 30 });

  expect((await post(`/replays/${workflowId}/resume`)).statusCode).toBe(202);
  await eventually(
    async () => (await childrenProgress(childIds)).every((p) => p.status === 'running'),
    'every child running again',
  );

  expect((await post(`/replays/${workflowId}/cancel`)).statusCode).toBe(202);
  const closed = await closedWorkflow(env.app, workflowId);
  expect(closed.workflow_status).toBe('CANCELLED');
  expect(closed.audit).toMatchObject({ status: 'cancelled' });
  expect(await closedStatuses(env.client, childIds)).toEqual(childIds.map(() => 'CANCELLED'));
});

it('republishes every matching event once, journaled once for the replay, with the lineage of an unsharded replay', async () => {
  const workflowId = await startRange({});
  const closed = await closedWorkflow(env.app, workflowId, {}, 60_000);
  expect(closed.workflow_status).toBe('COMPLETED');
  expect(closed.result).toMatchObject({ status: 'completed', matched: EVENTS, published: EVENTS, failed: 0 });
  expect((closed.result as { shards: unknown[] }).shards).toHaveLength(3);
  expect(closed.audit).toMatchObject({ status: 'completed', matched: EVENTS, published: EVENTS });

  // The journal: each source event once under this replay (the replay-once index), all of them.
  const journaled = await eventually(async () => {
    const rows = await replayRowsOf(env.h, workflowId);
    return rows.length >= EVENTS ? rows : undefined;
  }, 'the replays to be journaled');
  expect(journaled.map((r) => r.from_id).sort((a, b) => a - b)).toEqual([...ids].sort((a, b) => a - b));
  expect(journaled.every((r) => r.replay_count === 1 && r.replay_source === 'range')).toBe(true);

  // Kafka: each event sent once, value and key exactly as the lineage module makes them for this replay id (the
  // proof is an HMAC over the whole value, so equal proofs are equal bytes).
  const sent = await publishedBy(env.h, leads, workflowId);
  expect(sent).toHaveLength(EVENTS);
  const originals = new Map((await replayRows(env.h.pool, ids)).map((row) => [row.id, row]));
  for (const message of sent) {
    const row = originals.get(message._replayed_from_event_id as number)!;
    const expected = toReplayMessage(row, { source: 'range', replayId: workflowId }, env.h.lineageKey);
    const headers = message._headers as Record<string, string>;
    expect(headers['x-replay-proof']).toBe(lineageProof(env.h.lineageKey, expected.value));
    expect(message._key).toBe(expected.key?.toString() ?? null);
    expect(headers['x-replay-id']).toBe(workflowId);
  }
});

it('shows each running child’s own counts, not only the reports its coordinator holds (they grow rarer with time)', async () => {
  const workflowId = await startRange({ max_events_per_second: 3 });
  const coordinator = env.client.workflow.getHandle(workflowId);
  // The coordinator's own view, from reports alone: wait for a first report (at most one per child every 5 s at
  // first), then let the children send about two more events each (one a second) before pausing them.
  await eventually(
    async () => ((await coordinator.query(progressQuery).catch(() => undefined))?.published ?? 0) > 0,
    'a first report to the coordinator',
  );
  await new Promise((resolve) => setTimeout(resolve, 2_000));
  expect((await post(`/replays/${workflowId}/pause`)).statusCode).toBe(202);
  const childIds = [0, 1, 2].map((i) => `${workflowId}-shard-${i}`);
  await eventually(
    async () => (await childrenProgress(childIds)).every((p) => p.status === 'paused'),
    'every child paused',
  );
  const own = await childrenProgress(childIds);
  const reported = await coordinator.query(progressQuery);
  const view = (await progressOf(workflowId))!;

  // The control: the coordinator's copy is behind what the children sent since their last report.
  expect(reported.published).toBeLessThan(own.reduce((sum, p) => sum + p.published, 0));
  // The API's view is the children's own, shard by shard, and its totals are their sums.
  expect(view.shards!.map(({ published, failed, pages, cursor }) => ({ published, failed, pages, cursor }))).toEqual(
    own.map(({ published, failed, pages, cursor }) => ({ published, failed, pages, cursor })),
  );
  expect(view).toMatchObject({
    status: 'paused',
    published: own.reduce((sum, p) => sum + p.published, 0),
    pages: own.reduce((sum, p) => sum + p.pages, 0),
    cursor: Math.min(...own.map((p) => p.cursor)),
  });

  expect((await post(`/replays/${workflowId}/cancel`)).statusCode).toBe(202);
  expect((await closedWorkflow(env.app, workflowId)).workflow_status).toBe('CANCELLED');
});

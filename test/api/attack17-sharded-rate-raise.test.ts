import type { ReplayProgress } from '../../workflows/definitions';
import { json, replayRowsOf, type ApiEnv, type WorkflowDetail } from '../support/api';
import { createShardedApiEnv, type ShardedApiEnv } from '../support/sharded-api';
import { eventually } from '../support/sink';

/**
 * attack17, sharded range replay: the rate reaches every child.
 *
 * Invariant: POST /replays/:id/rate takes effect on every child of a sharded replay within a bounded time (as pause
 * and cancel do), so that an operator who set too low a rate and raises it (or removes it) sees the replay go on.
 *
 * Attack: a replay started at 0.02 events/s over 4 shards (each child gets 0.005/s): each child sends one event and
 * then sleeps chunk.read / rate = 200 s (workflows/range-replay.ts, `await sleep(due)`). The rate is then removed. The
 * children receive the signal (their state shows it), but the sleep already started is not cut short: nothing more is
 * sent for 200 s, and the replay, 40 events with no limit any more, cannot finish within a minute. The split makes it
 * worse the more shards there are (each sleeps shards times longer than the rate the operator gave).
 */
let env: ApiEnv;
let leads: string;
let window: { start: string; end: string };
let post: ShardedApiEnv['post'];
const EVENTS = 40;

beforeAll(async () => {
  ({ env, window, post } = await createShardedApiEnv('attack17-rate-raise', 4, EVENTS));
  leads = env.h.topics.leads;
}, 120_000);

afterAll(() => env?.close());

const detailOf = async (workflowId: string) => {
  const res = await env.app.inject({ method: 'GET', url: `/replays/${encodeURIComponent(workflowId)}` });
  expect(res.statusCode).toBe(200);
  return json<WorkflowDetail & { progress: ReplayProgress | null }>(res);
};

it('a rate removed from a throttled sharded replay lets it finish within a minute', async () => {
  const res = await post('/replay/range', { ...window, topic: leads, max_events_per_second: 0.02 });
  expect(res.statusCode).toBe(202);
  const workflowId = json<{ workflow_id: string }>(res).workflow_id;
  // Every child has sent its first event and is now waiting out its rate.
  await eventually(
    async () => ((await detailOf(workflowId)).progress?.published ?? 0) >= 4,
    'each of the four children to send its first event',
    60_000,
    500,
  );
  expect((await post(`/replays/${workflowId}/rate`, { max_events_per_second: null })).statusCode).toBe(202);

  const closed = await eventually(
    async () => {
      const d = await detailOf(workflowId);
      return d.workflow_status === 'RUNNING' ? undefined : d;
    },
    'the replay to finish once its rate is removed',
    60_000,
    500,
  ).catch(async (err: Error) => ({ timedOut: err.message.split('\n')[0], now: await detailOf(workflowId) }));
  const published = 'timedOut' in closed ? closed.now.progress?.published : undefined;
  expect({
    status: 'timedOut' in closed ? `still running, ${published} of ${EVENTS} published` : closed.workflow_status,
  }).toEqual({ status: 'COMPLETED' });
  expect(await replayRowsOf(env.h, workflowId)).toHaveLength(EVENTS);
}, 240_000);

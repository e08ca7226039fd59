import { MAX_REPLAY_SHARDS } from '../../journal/kinds';
import { CHUNK_BUDGET_MS } from '../../workflows/range-replay';
import { reportDue } from '../../workflows/range-shards';
import { progressQuery } from '../../workflows/definitions';
import { json, type ApiEnv } from '../support/api';
import { createShardedApiEnv, settled, type ShardedApiEnv } from '../support/sharded-api';
import { eventually } from '../support/sink';

/**
 * Adversarial review 15, the coordinator's history bound (commit a814ae2, docs/integrity.md §5).
 *
 * Invariant: the coordinator of a sharded range replay never continues as new, so its history must stay under
 * Temporal's 51,200 events however long a throttled replay runs (§5: "bounded by design ... That leaves room for
 * operators"). Past the limit Temporal terminates the coordinator, and its children are cancelled with it.
 *
 * Attack: the reports are now bounded (about 260 per child in a year), but every operator control is not: a pause, a
 * resume or a new rate adds to the coordinator's history a signal, its workflow task, and a signal to each running
 * child with the workflow tasks their completions bring. Nothing bounds how many controls a replay receives in its
 * life. A long throttled replay is exactly the one operators steer: paused every night and resumed every morning (or
 * its rate lowered for business hours and raised after), a year-long replay of the most children receives 730
 * controls.
 *
 * Fixed: reports are spaced by a fifth of the running time (about 66 a year per child), which leaves room for a
 * nightly pause and morning resume over a year, and past CONTROL_HISTORY_BUDGET the API refuses controls
 * (test/api/attack15-replays-fake-temporal.test.ts).
 *
 * Measured, then extrapolated: the cost of one control is measured on the real stack (dev server, a real worker) for
 * a replay of 3 children, split into the part every control costs and the part per child (from a control that
 * reaches the children and one that reaches none: a second pause while paused), and applied to the most children;
 * the reports are counted with reportDue as test/unit/attack14-coordinator-history.test.ts does (4 events each).
 */
const HISTORY_EVENT_LIMIT = 51_200;
const DAY_MS = 86_400_000;
const CHILDREN = MAX_REPLAY_SHARDS + 1;
const SHARDS = 3;

let env: ApiEnv;
let window: { start: string; end: string };
let post: ShardedApiEnv['post'];

beforeAll(async () => {
  ({ env, window, post } = await createShardedApiEnv('attack15-controls', SHARDS, 30));
});

afterAll(() => env?.close());

/** Reports one child sends over a year of replaying, one check per unthrottled chunk (as attack14's model). */
function reportsInAYear(): number {
  let reports = 0;
  let reportedAt = 0;
  for (let now = CHUNK_BUDGET_MS; now <= 365 * DAY_MS; now += CHUNK_BUDGET_MS) {
    if (reportDue(0, reportedAt, now)) [reports, reportedAt] = [reports + 1, now];
  }
  return reports;
}

it('keeps the coordinator of the most children under the history limit through a year of nightly pause and resume', async () => {
  const res = await post('/replay/range', { ...window, topic: env.h.topics.leads, max_events_per_second: 0.1 });
  expect(res.statusCode).toBe(202);
  const workflowId = json<{ workflow_id: string }>(res).workflow_id;
  const coordinator = env.client.workflow.getHandle(workflowId);
  const childIds = Array.from({ length: SHARDS }, (_, i) => `${workflowId}-shard-${i}`);
  const children = () => Promise.all(childIds.map((id) => env.client.workflow.getHandle(id).query(progressQuery)));
  await eventually(async () => (await children().catch(() => [])).length === SHARDS, 'the children running');
  const length = async () => (await coordinator.fetchHistory()).events?.length ?? 0;
  // The history a control adds, once the coordinator is idle again (no report meanwhile: a child sends one event
  // every 30 s and reports at its second).
  const costOf = async (control: () => Promise<unknown>, applied: () => Promise<boolean>) => {
    const before = await length();
    await control();
    await eventually(applied, 'the control applied');
    const after = await settled(length, 'the coordinator idle', 1_000);
    return after - before;
  };

  const pause = await costOf(
    () => post(`/replays/${workflowId}/pause`),
    async () => (await children()).every((p) => p.status === 'paused'),
  );
  // A second pause reaches no child: what every control costs whatever the children.
  const fixed = await costOf(
    () => post(`/replays/${workflowId}/pause`),
    async () => true,
  );
  const resume = await costOf(
    () => post(`/replays/${workflowId}/resume`),
    async () => (await children()).every((p) => p.status === 'running'),
  );
  await post(`/replays/${workflowId}/cancel`);

  const perChild = Math.max(0, Math.max(pause, resume) - fixed);
  const perControl = fixed + (perChild / SHARDS) * CHILDREN;
  const reports = CHILDREN * reportsInAYear() * 4;
  const controls = 365 * 2 * perControl;
  const figures = { pause, resume, fixed, perControl, reports, controls, total: reports + controls };
  expect(figures.total < HISTORY_EVENT_LIMIT ? 'under the limit' : `over: ${JSON.stringify(figures)}`).toBe(
    'under the limit',
  );
}, 120_000);

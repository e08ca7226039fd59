import fc from 'fast-check';
import { progressQuery, type ReplayProgress } from '../../workflows/definitions';
import { json, replayRowsOf, type ApiEnv, type WorkflowDetail } from '../support/api';
import { createShardedApiEnv, type ShardedApiEnv } from '../support/sharded-api';
import { eventually } from '../support/sink';

/**
 * attack17, sharded range replay under generated operator controls.
 *
 * Invariants: every matching event is replayed exactly once per replay (one replay row per source event under the
 * parent replay id); GET /replays/:id's counts (published, failed, pages) never go backwards between two reads unless
 * a shard of the later read is marked stale; a cancelled replay closes CANCELLED within 2 minutes of the cancel and its
 * audit row counts at least what GET showed before and at most the replay rows journaled; a completed one counts all.
 *
 * Attack: fast-check generates the ordering (page, per_key), the rate, and a sequence of pause / resume / rate / cancel
 * at random delays, each applied to a fresh replay of the same 40 leads (4 shards, pages of 2), GET read between and
 * after every step.
 */
let env: ApiEnv;
let leads: string;
let ids: number[];
let window: { start: string; end: string };
let post: ShardedApiEnv['post'];
const EVENTS = 40;

beforeAll(async () => {
  ({ env, window, ids, post } = await createShardedApiEnv('attack17-generated', 4, EVENTS));
  leads = env.h.topics.leads;
}, 120_000);

afterAll(() => env?.close());

type Step =
  | { action: 'pause' | 'resume' | 'cancel' | 'wait'; delayMs: number }
  | { action: 'rate'; delayMs: number; rate: number | null };

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({
    action: fc.constantFrom('pause', 'resume', 'cancel', 'wait'),
    delayMs: fc.integer({ min: 0, max: 6000 }),
  }),
  fc.record({
    action: fc.constant('rate'),
    delayMs: fc.integer({ min: 0, max: 6000 }),
    rate: fc.option(fc.integer({ min: 1, max: 40 }), { nil: null }),
  }),
) as fc.Arbitrary<Step>;

const detailOf = async (workflowId: string) => {
  const res = await env.app.inject({ method: 'GET', url: `/replays/${encodeURIComponent(workflowId)}` });
  if (res.statusCode !== 200) throw new Error(`GET answered ${res.statusCode}: ${res.payload}`);
  return json<WorkflowDetail & { progress: ReplayProgress | null }>(res);
};

/** Every child still running shows the status its coordinator was told, within 15 s (children asked themselves). */
async function reachesChildren(
  workflowId: string,
  progress: ReplayProgress | null,
  status: 'paused' | 'running',
  violations: unknown[],
): Promise<void> {
  const ids = (progress?.shards ?? []).filter((s) => s.status !== 'completed').map((s) => s.workflow_id);
  const own = async () =>
    (
      await Promise.all(
        ids.map(async (id) => {
          const handle = env.client.workflow.getHandle(id);
          const closed = (await handle.describe()).status.name;
          if (closed !== 'RUNNING') return null;
          return handle.query(progressQuery).then((p) => p.status);
        }),
      )
    ).filter((s) => s !== null && s !== status);
  const wrong = await eventually(async () => ((await own()).length === 0 ? 'ok' : undefined), 'children', 15_000, 500)
    .then(() => [])
    .catch(() => own());
  const coordinator = await env.client.workflow.getHandle(workflowId).describe();
  if (wrong.length > 0 && coordinator.status.name === 'RUNNING')
    violations.push({ workflowId, status, children: wrong });
}

it('keeps exactly-once, monotonic progress and honest audit counts under generated controls', async () => {
  const violations: unknown[] = [];
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom('page', 'per_key'),
      fc.integer({ min: 2, max: 12 }),
      fc.array(step, { minLength: 1, maxLength: 5 }),
      async (ordering, rate, steps) => {
        const res = await post('/replay/range', { ...window, topic: leads, ordering, max_events_per_second: rate });
        expect(res.statusCode).toBe(202);
        const workflowId = json<{ workflow_id: string }>(res).workflow_id;
        let last: ReplayProgress | undefined;
        let cancelledAt: number | undefined;
        const read = async (when: string) => {
          const d = await detailOf(workflowId);
          const p = d.progress;
          if (p && last && !(p.shards ?? []).some((s) => s.stale)) {
            for (const field of ['published', 'failed', 'pages'] as const) {
              if (p[field] < last[field])
                violations.push({
                  workflowId,
                  ordering,
                  rate,
                  steps,
                  when,
                  field,
                  before: last[field],
                  after: p[field],
                });
            }
          }
          if (p) last = p;
          return d;
        };
        for (const s of steps) {
          await new Promise((resolve) => setTimeout(resolve, s.delayMs));
          await read(`before ${s.action}`);
          if (s.action === 'wait') continue;
          const r =
            s.action === 'rate'
              ? await post(`/replays/${workflowId}/rate`, { max_events_per_second: s.rate })
              : await post(`/replays/${workflowId}/${s.action}`);
          // 409 once it has completed is fine.
          if (![202, 409].includes(r.statusCode)) violations.push({ workflowId, step: s, status: r.statusCode });
          if (s.action === 'cancel' && r.statusCode === 202) cancelledAt ??= Date.now();
          const after = await read(`after ${s.action}`);
          if (r.statusCode === 202 && (s.action === 'pause' || s.action === 'resume') && cancelledAt === undefined)
            await reachesChildren(workflowId, after.progress, s.action === 'pause' ? 'paused' : 'running', violations);
        }
        // Whatever the steps left it in, let it end: resumed at full speed, or cancelled.
        if (cancelledAt === undefined) {
          await post(`/replays/${workflowId}/resume`);
          await post(`/replays/${workflowId}/rate`, { max_events_per_second: null });
        }
        const closed = await eventually(
          async () => {
            const d = await read('closing');
            return d.workflow_status === 'RUNNING' ? undefined : d;
          },
          `${workflowId} to close`,
          150_000,
          300,
        );
        if (cancelledAt !== undefined && closed.workflow_status === 'CANCELLED' && Date.now() - cancelledAt > 120_000)
          violations.push({ workflowId, cancelToClosedMs: Date.now() - cancelledAt });
        // The replay rows once their count has stopped moving (0 is a count too).
        let seen = -1;
        const rows = (
          await eventually(
            async () => {
              const n = (await replayRowsOf(env.h, workflowId)).length;
              const same = n === seen;
              seen = n;
              return same ? { n } : undefined;
            },
            'replay rows to settle',
            60_000,
            2_000,
          )
        ).n;
        const replayed = await replayRowsOf(env.h, workflowId);
        const from = replayed.map((r) => r.from_id);
        if (new Set(from).size !== from.length)
          violations.push({ workflowId, duplicates: from.length - new Set(from).size });
        if (from.some((id) => !ids.includes(id)))
          violations.push({ workflowId, foreign: from.filter((id) => !ids.includes(id)) });
        const audit = closed.audit as { status: string; published: number };
        if (closed.workflow_status === 'COMPLETED') {
          if (rows !== EVENTS || audit.published !== EVENTS)
            violations.push({ workflowId, ordering, steps, completed: { rows, audit: audit.published } });
        } else if (closed.workflow_status === 'CANCELLED') {
          const shown = last?.published ?? 0;
          if (audit.status !== 'cancelled' || audit.published < shown || audit.published > rows)
            violations.push({
              workflowId,
              ordering,
              rate,
              steps,
              cancelled: { shown, audit: audit.published, status: audit.status, rows },
            });
        } else {
          violations.push({ workflowId, status: closed.workflow_status, audit });
        }
        expect(violations).toEqual([]);
      },
    ),
    { numRuns: Number(process.env.ATTACK17_RUNS ?? 6), endOnFailure: true },
  );
}, 1_500_000);

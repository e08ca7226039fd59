import type { Client } from '@temporalio/client';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../api/app';
import type { TemporalGateway } from '../../api/plugins/temporal';
import { startAudit } from '../../repository/replay-audit';
import { rangeReplayWorkflow } from '../../workflows';
import { CONTROL_HISTORY_BUDGET, type ReplayProgress } from '../../workflows/definitions';
import { json } from '../support/api';
import { createSinkHarness, type SinkHarness } from '../support/sink';

/**
 * Adversarial review 15, GET /replays/:id of a sharded range replay and its controls, against a fake Temporal gateway
 * (answering as the server does in the cases below); the route, the audit row in Postgres and withChildProgress are
 * real.
 *
 * Invariant: the progress view of one replay never goes backwards between two reads (published, failed, pages and
 * cursor never decrease), unless it says so: a shard whose child could not be asked is marked `stale`.
 *
 * Attack: the view takes each running child's own answer to the progress query over the report its coordinator holds,
 * and a child that does not answer keeps its last report, which is far older now that reports are spaced by a share
 * of the running time with no cap. One failed child query (the child between two runs: continue-as-new every 200
 * calls, a query before the new run's first workflow task completes is refused) dropped the view back to a report
 * hours old. Fixed: a child that does not answer is asked once more a moment later (bounded: each ask waits at most
 * 2 s), and one that still does not answer is marked stale.
 *
 * Also here, the coordinator's history budget (docs/integrity.md §5): past CONTROL_HISTORY_BUDGET events, pause,
 * resume and rate are refused with a 409 that says why and what to do; cancel is not.
 */
let h: SinkHarness;
let app: FastifyInstance;
const WORKFLOW_ID = 'replay-range-attack15-view';
const CHILD = `${WORKFLOW_ID}-shard-0`;

/** What the coordinator holds: the child's last report. */
const reported = { published: 10, failed: 0, pages: 5, cursor: 20 };
/** What the child itself answered at the first read. */
const live = { published: 400, failed: 1, pages: 200, cursor: 800 };

const progress = (counts: typeof reported, shards?: ReplayProgress['shards']): ReplayProgress => ({
  status: 'running',
  matched: 1000,
  ...counts,
  eventsPerSecond: 1,
  maxEventsPerSecond: 1,
  ...(shards ? { shards } : {}),
});

let childQueries = 0;
/** Which of the child's queries it refuses (1-based), as a run not ready for queries does. */
let refused: (query: number) => boolean = () => false;
let historyLength = 100;
const fakeClient = {
  workflow: {
    getHandle: (id: string) => ({
      describe: async () => ({
        workflowId: id,
        type: rangeReplayWorkflow.name,
        status: { name: 'RUNNING' },
        historyLength,
        raw: { workflowExecutionInfo: { firstRunId: 'run-1' } },
      }),
      result: async () => undefined,
      signal: async () => undefined,
      cancel: async () => undefined,
      query: async () => {
        if (id === WORKFLOW_ID) {
          return progress(reported, [
            {
              workflow_id: CHILD,
              status: 'running',
              matched: 1000,
              ...reported,
              eventsPerSecond: 1,
              maxEventsPerSecond: 1,
            },
          ]);
        }
        childQueries += 1;
        if (refused(childQueries)) throw new Error('workflow is not ready to handle the query');
        return progress(live);
      },
    }),
  },
} as unknown as Client;
const gateway: TemporalGateway = { call: (fn) => fn(fakeClient), close: async () => undefined };

beforeAll(async () => {
  h = await createSinkHarness('a15-view');
  await startAudit(h.pool, {
    workflowId: WORKFLOW_ID,
    runId: 'run-1',
    kind: 'range',
    source: 'operator_api',
    filter: {},
  });
  app = await buildApp({
    config: h.config,
    pool: h.pool,
    metrics: h.metrics,
    log: h.log,
    healthChecks: { postgres: () => h.pool.query('SELECT 1') },
    archive: h.archive,
    temporal: gateway,
  });
}, 60_000);
afterAll(async () => {
  await app?.close();
  await h?.close();
});

const view = async () => {
  const res = await app.inject({ method: 'GET', url: `/replays/${WORKFLOW_ID}` });
  expect(res.statusCode).toBe(200);
  const { progress: p } = json<{ progress: ReplayProgress }>(res);
  return { published: p.published, failed: p.failed, pages: p.pages, cursor: p.cursor, stale: p.shards![0].stale };
};
const fields = ['published', 'failed', 'pages', 'cursor'] as const;
const backwards = (first: Awaited<ReturnType<typeof view>>, second: typeof first) =>
  fields.filter((field) => second[field] < first[field]).map((f) => `${f} ${first[f]} -> ${second[f]}`);

it('never shows a running sharded replay behind what it showed before, when a child does not answer once', async () => {
  childQueries = 0;
  refused = (query) => query === 2;
  const first = await view();
  expect(first).toEqual({ ...live, stale: undefined }); // the control: the first read shows the child's own counts
  const second = await view();
  expect(childQueries).toBe(3); // refused once, answered when asked again
  expect(backwards(first, second)).toEqual([]);
  expect(second.stale).toBeUndefined();
});

it('marks a child that does not answer at all as stale, with its last report', async () => {
  childQueries = 0;
  refused = (query) => query > 1;
  const first = await view();
  const second = await view();
  expect(childQueries).toBe(3);
  expect(second).toEqual({ ...reported, stale: true });
  // Backwards only where it says so.
  expect(backwards(first, second).length > 0 && second.stale === true).toBe(true);
});

it('refuses pause, resume and rate past the history budget, with why and what to do; cancel still works', async () => {
  const control = (action: string, payload?: object) =>
    app.inject({
      method: 'POST',
      url: `/replays/${WORKFLOW_ID}/${action}`,
      headers: { 'x-requested-by': 'test' },
      ...(payload ? { payload } : {}),
    });
  historyLength = CONTROL_HISTORY_BUDGET - 1;
  expect((await control('pause')).statusCode).toBe(202);
  historyLength = CONTROL_HISTORY_BUDGET;
  for (const [action, payload] of [['pause'], ['resume'], ['rate', { max_events_per_second: 5 }]] as const) {
    const res = await control(action, payload);
    expect(res.statusCode).toBe(409);
    expect(json<{ message: string }>(res).message).toContain(`its history holds ${CONTROL_HISTORY_BUDGET} events`);
    expect(json<{ message: string }>(res).message).toContain('cancel it and replay the rest');
  }
  expect((await control('cancel')).statusCode).toBe(202);
  historyLength = 100;
});

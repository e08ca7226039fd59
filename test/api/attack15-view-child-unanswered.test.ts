import type { Client } from '@temporalio/client';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../api/app';
import type { TemporalGateway } from '../../api/plugins/temporal';
import { startAudit } from '../../repository/replay-audit';
import { rangeReplayWorkflow } from '../../workflows';
import type { ReplayProgress } from '../../workflows/definitions';
import { json } from '../support/api';
import { createSinkHarness, type SinkHarness } from '../support/sink';

/**
 * Adversarial review 15, GET /replays/:id of a sharded range replay (commit a814ae2, api/routes/replays.ts
 * freshShards, workflows/shard-progress.ts withChildProgress).
 *
 * Invariant: the progress view of one replay never goes backwards between two reads: published, failed, pages and
 * cursor never decrease.
 *
 * Attack: the view takes each running child's own answer to the progress query over the report its coordinator holds,
 * and a child that does not answer "keeps its last report". Since a814ae2 those reports are spaced by 5% of the
 * replay's running time with no cap (a child that has run a day reports every ~70 minutes, a week every ~8 hours).
 * So one child query that fails — the child between two runs (continue-as-new every 200 calls: a query before the new
 * run's first workflow task completes is refused after a short wait), a query timing out on a busy worker — and the
 * view drops back to a report hours old, and comes forward again at the next read. Read after read, an operator sees
 * the replay's progress jump back and forth.
 *
 * Here Temporal answers as it does in that case (a fake gateway: the coordinator answers its reports; the child
 * answers the first query and refuses the second, as a run not ready for queries does); the route, the audit row in
 * Postgres and withChildProgress are real.
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
const fakeClient = {
  workflow: {
    getHandle: (id: string) => ({
      describe: async () => ({
        workflowId: id,
        type: rangeReplayWorkflow.name,
        status: { name: 'RUNNING' },
        raw: { workflowExecutionInfo: { firstRunId: 'run-1' } },
      }),
      result: async () => undefined,
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
        if (childQueries === 1) return progress(live);
        throw new Error('workflow is not ready to handle the query'); // the next run's first workflow task pending
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
  const { published, failed, pages, cursor } = json<{ progress: ReplayProgress }>(res).progress;
  return { published, failed, pages, cursor };
};

it('never shows a running sharded replay behind what it showed before, when a child does not answer once', async () => {
  const first = await view();
  expect(first).toEqual(live); // the control: the first read shows the child's own counts
  const second = await view();
  expect(childQueries).toBe(2);
  const back = (['published', 'failed', 'pages', 'cursor'] as const).filter((field) => second[field] < first[field]);
  expect(back.map((field) => `${field} ${first[field]} -> ${second[field]}`)).toEqual([]);
});

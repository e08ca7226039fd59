import type { WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import { createApiEnv, json, type ApiEnv } from '../support/api';
import { uniqueSuffix } from '../support/env';
import { seedJournal } from '../support/journal';

/**
 * Attack (issue 11, point 3: "act only on workflows this service started"): a workflow id names a chain of runs,
 * not one run. Once a replay of ours has closed, anyone in the shared namespace may start a new run under the same
 * id (the default reuse policy allows it). The replay routes check the id prefix, that replay_audit has a row for
 * the id, and the type of the latest run — never the run id the audit row recorded — so they read and cancel the
 * other team's run as if it were ours.
 */
jest.setTimeout(120_000);

let env: ApiEnv;
let ours: string;
let ourRunId: string | null;
let theirs: WorkflowHandleWithFirstExecutionRunId | undefined;

beforeAll(async () => {
  // Waits for our replay to close even on a busy machine (the default 5 s answers 202 while a cold worker starts).
  env = await createApiEnv('atk3-id-reuse', { ingest: false, env: { API_REPLAY_WAIT_MS: '60000' } });
  const [eventId] = await seedJournal(env.h.pool, 1, { topics: [env.h.topics.leads] });
  const res = await env.app.inject({ method: 'POST', url: `/replay/${eventId}`, headers: { 'x-requested-by': 't' } });
  expect(res.statusCode).toBe(200); // our replay ran and closed
  ours = json<{ workflow_id: string }>(res).workflow_id;
  const { rows } = await env.h.pool.query<{ run_id: string | null }>(
    'SELECT run_id FROM replay_audit WHERE workflow_id = $1',
    [ours],
  );
  ourRunId = rows[0].run_id;
  // Another team's run under the same id and type name, on its own task queue (no worker: it stays running).
  theirs = await env.client.workflow.start('replayEventWorkflow', {
    taskQueue: `other-team-${uniqueSuffix()}`,
    workflowId: ours,
    args: [{}],
  });
});

afterAll(async () => {
  await theirs?.terminate('test finished').catch(() => undefined);
  await env?.close();
});

it("GET /replays/:id shows our closed run, not another team's later run under the same id", async () => {
  const res = await env.app.inject({ method: 'GET', url: `/replays/${encodeURIComponent(ours)}` });
  expect(ourRunId).toBeTruthy();
  expect(theirs!.firstExecutionRunId).not.toBe(ourRunId);
  // Ours completed; a 404 would also do. What must not come back is the foreign run's state.
  expect([200, 404]).toContain(res.statusCode);
  if (res.statusCode === 200) expect(json(res).workflow_status).toBe('COMPLETED');
});

it("POST /replays/:id/cancel does not cancel another team's run under the id of one of ours", async () => {
  const res = await env.app.inject({
    method: 'POST',
    url: `/replays/${encodeURIComponent(ours)}/cancel`,
    headers: { 'x-requested-by': 't' },
  });
  const history = await theirs!.fetchHistory();
  const cancelRequested = (history.events ?? []).some((e) => e.workflowExecutionCancelRequestedEventAttributes);
  expect({ status: res.statusCode, cancelRequested }).toEqual({ status: expect.any(Number), cancelRequested: false });
  expect(res.statusCode).not.toBe(202);
});

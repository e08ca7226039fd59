import fs from 'node:fs';
import path from 'node:path';
import { WorkflowFailedError } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { subjectHash } from '../../lifecycle/erasure-target';
import { storeErasureSubject } from '../../repository/erasure';
import { startAudit } from '../../repository/replay-audit';
import { ensureServiceKey } from '../../repository/service-keys';
import type { RangeReplayInput, RangeState } from '../../workflows/definitions';
import type { SinkHarness } from '../support/sink';
import { createTimeSkippingWorld, workflowBundle } from '../support/temporal';

/**
 * A statement Postgres refuses for the data it reads fails the same way on every attempt: a payload nested 11,000
 * levels deep (journaled: under the size limit) walked by `$.**` raises SQLSTATE 54001. Such an activity failed and
 * was retried with backoff for ever, and its workflow never ended. Now the worker makes it non-retryable
 * (UnprocessableData): the workflow fails at once and its audit row says why. Each workflow is given an hour of
 * (skipped) time, so that the old behaviour ends as a timeout with the audit row still running, not as a hung test.
 */
let env: TestWorkflowEnvironment;
let h: SinkHarness;
let close: () => Promise<void>;
const taskQueue = 'deterministic-failures-test';
const tenant = 'deep-tenant';
const DEPTH = 11_000;
const FILTER = 'exists($.** ? (@ == "x"))';
const REFUSED = /stack depth limit exceeded \(SQLSTATE 54001, program_limit_exceeded\)/;

beforeAll(async () => {
  ({ env, h, close } = await createTimeSkippingWorld('detfail', taskQueue));
  const deep = `{"tenant_id":"${tenant}","email":"someone@example.com","deep":${'{"a":'.repeat(DEPTH)}1${'}'.repeat(DEPTH)}}`;
  await h.pool.query(
    `INSERT INTO event_journal (tenant_id, topic, payload, received_at) VALUES ($1, $2, $3::jsonb, now())`,
    [tenant, h.topics.leads, deep],
  );
});
afterAll(() => close?.());

/**
 * Starts a workflow with an hour to run and expects it to fail on the activity failure the worker made of Postgres's
 * refusal: non-retryable UnprocessableData naming the SQLSTATE (found under Temporal's wrappers).
 */
async function expectRefused(workflowType: string, workflowId: string, input: object): Promise<void> {
  const handle = await env.client.workflow.start(workflowType, {
    taskQueue,
    workflowId,
    args: [input],
    workflowExecutionTimeout: '1h',
  });
  const err = await handle.result().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(WorkflowFailedError);
  let cause = (err as WorkflowFailedError).cause as { type?: string; message: string; cause?: unknown } | undefined;
  while (cause && !cause.type && cause.cause) cause = cause.cause as typeof cause;
  expect(cause).toMatchObject({
    type: 'UnprocessableData',
    nonRetryable: true,
    message: expect.stringMatching(REFUSED),
  });
}

const replayAudit = async (workflowId: string) =>
  (await h.pool.query('SELECT status, error FROM replay_audit WHERE workflow_id = $1', [workflowId])).rows[0];

const range = (): RangeReplayInput => ({
  start: '2000-01-01T00:00:00Z',
  end: '2100-01-01T00:00:00Z',
  tenantId: tenant,
  payloadFilter: FILTER,
  source: 'range',
  targetTopic: `${h.topics.leads}.deep`,
});

it('a range replay whose payload filter Postgres cannot evaluate on a stored payload fails, and its audit row says why', async () => {
  const workflowId = 'replay-range-deep-filter';
  await expectRefused('rangeReplayWorkflow', workflowId, range());
  expect(await replayAudit(workflowId)).toEqual({ status: 'failed', error: expect.stringMatching(REFUSED) });
});

it('so does a run that is past planning (a continued run): the page activity fails the same way', async () => {
  const workflowId = 'replay-range-deep-pages';
  // What the first run had recorded and carried over to this one (continue-as-new passes its state).
  await startAudit(h.pool, { workflowId, runId: 'first-run', kind: 'range', source: 'range', tenantId: tenant });
  const { rows } = await h.pool.query<{ max: number }>('SELECT max(id) AS max FROM event_journal');
  const state: RangeState = {
    cursor: 0,
    maxId: rows[0].max,
    matched: 1,
    published: 0,
    failed: 0,
    pages: 0,
    startedAt: Date.now(),
    paused: false,
    maxEventsPerSecond: null,
  };
  await expectRefused('rangeReplayWorkflow', workflowId, { ...range(), state });
  expect(await replayAudit(workflowId)).toEqual({ status: 'failed', error: expect.stringMatching(REFUSED) });
});

it('an erasure by data subject (which looks for the value at every level, $.**) fails, and its audit row says why', async () => {
  // Not the stored row's own email: the subject is looked for at every level of every payload.
  const target = { kind: 'subject', field: 'email', value: 'another@example.com' } as const;
  const hash = subjectHash(await ensureServiceKey(h.pool, 'erasure'), target);
  await storeErasureSubject(h.pool, hash, target);
  const workflowId = 'erasure-deep-payload';
  await expectRefused('erasureWorkflow', workflowId, { subjectHash: hash, requestedBy: 'test-admin' });
  const audit = await h.pool.query('SELECT kind, status, error FROM lifecycle_audit WHERE workflow_id = $1', [
    workflowId,
  ]);
  expect(audit.rows).toEqual([{ kind: 'erasure', status: 'failed', error: expect.stringMatching(REFUSED) }]);
});

it('still replays a range replay history whose plan failed before the audit row recorded it (closed before the upgrade)', async () => {
  // Recorded (time-skipping server, fetchHistory) by the workflow code before PLAN_FAILURE_PATCH: planRange failed
  // with UnprocessableData and the workflow failed with no audit write after it; replaying it must not ask for one.
  const fixture = path.join(__dirname, '../fixtures/range-replay-history-plan-failure-unrecorded.json');
  const history: unknown = JSON.parse(fs.readFileSync(fixture, 'utf8'));
  await expect(Worker.runReplayHistory({ workflowBundle: await workflowBundle() }, history)).resolves.toBeUndefined();
});

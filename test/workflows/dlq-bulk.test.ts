import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { createActivities } from '../../activities';
import { classifyDeadLetters } from '../../journal/error-class';
import { dlqBulkProgressQuery, type DlqBulkInput, type DlqBulkResult } from '../../workflows/definitions';
import { seedDeadLetters } from '../support/dlq';
import type { SinkHarness } from '../support/sink';
import { activityDeps, createTimeSkippingWorld } from '../support/temporal';

let env: TestWorkflowEnvironment;
let h: SinkHarness;
let close: () => Promise<void>;
const taskQueue = 'dlq-bulk-test';

beforeAll(async () => {
  ({ env, h, close } = await createTimeSkippingWorld('dlqbulk', taskQueue));
});
afterAll(() => close?.());

let run = 0;
/** Runs a bulk action to its end: its result, its last run's progress and its audit row. */
async function bulk(input: Omit<DlqBulkInput, 'source'>) {
  const workflowId = `dlq-bulk-test-${++run}`;
  const handle = await env.client.workflow.start('dlqBulkWorkflow', {
    taskQueue,
    workflowId,
    args: [{ source: 'operator_api', requestedBy: 'ops-ann', ...input }],
    workflowExecutionTimeout: '1h',
  });
  const result = (await handle.result()) as DlqBulkResult;
  const runs = await runChain(workflowId, handle.firstExecutionRunId);
  const progress = await env.client.workflow.getHandle(workflowId).query(dlqBulkProgressQuery);
  const audit = (await h.pool.query('SELECT * FROM replay_audit WHERE workflow_id = $1', [workflowId])).rows[0];
  return { workflowId, result, progress, audit, runs };
}

/** How many runs the workflow's chain has (1 + its continue-as-news), read from each run's history. */
async function runChain(workflowId: string, firstRunId: string): Promise<number> {
  let runs = 0;
  for (let runId: string | undefined = firstRunId; runId; runs++) {
    const history = await env.client.workflow.getHandle(workflowId, runId).fetchHistory();
    const last = history.events?.at(-1);
    runId = last?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId ?? undefined;
  }
  return runs;
}

const rows = async (ids: number[]) =>
  (await h.pool.query('SELECT * FROM event_dlq WHERE id = ANY($1) ORDER BY id', [ids])).rows;

it('retries a group now, page by page across continue-as-new, through the DLQ retry activity', async () => {
  const seeded = await seedDeadLetters(h.pool, h.topics.leads, { fixable: 23, noTenant: 4, badJson: 3 });
  const journalBefore = await h.journalCount();

  const { workflowId, result, progress, audit, runs } = await bulk({
    action: 'retry',
    filter: { errorClass: 'db_error:check_violation:bar_block' },
    pageSize: 5,
    pagesPerRun: 1,
  });
  expect(result).toMatchObject({
    status: 'completed',
    action: 'retry',
    matched: 23,
    done: 23,
    pages: 5,
    counts: { resolved: 23, retrying: 0, parked: 0, skipped: 0 },
  });
  // Five pages of five, one page per run: the last run's query sees the whole carried state.
  expect(progress).toMatchObject({ status: 'completed', matched: 23, done: 23, pages: 5 });
  expect(await h.journalCount()).toBe(journalBefore + 23);
  for (const row of await rows(seeded.fixable)) {
    expect(row).toMatchObject({ status: 'resolved', attempts: 1, bulk_action_id: workflowId });
    expect(row.resolved_event_id).not.toBeNull();
  }
  // Nothing outside the group was touched.
  for (const row of await rows([...seeded.noTenant, ...seeded.badJson])) {
    expect(row).toMatchObject({ status: 'pending', attempts: 0, bulk_action_id: null });
  }
  expect(audit).toMatchObject({
    kind: 'dlq_bulk',
    status: 'completed',
    requested_by: 'ops-ann',
    matched: 23,
    published: 23,
    failed: 0,
    filter: { action: 'retry', errorClass: 'db_error:check_violation:bar_block' },
  });
  // One page per run: the five pages ran in five runs, and a sixth found the group done.
  expect(runs).toBe(6);
});

it('parks, unparks and discards (with its reason) exactly the entries a filter selects', async () => {
  const seeded = await seedDeadLetters(h.pool, h.topics.jobs, { noTenant: 6, badJson: 4, tenant: 'globex' });

  const parked = await bulk({ action: 'park', filter: { topic: h.topics.jobs, errorClass: 'missing_tenant' } });
  expect(parked.result).toMatchObject({ matched: 6, counts: { parked: 6, skipped: 0 } });
  expect((await rows(seeded.noTenant)).map((r) => r.status)).toEqual(Array(6).fill('parked'));

  // Parked entries are what unpark acts on; they come back due now, with a fresh round of attempts.
  const unparked = await bulk({ action: 'unpark', filter: { topic: h.topics.jobs, status: 'parked' } });
  expect(unparked.result).toMatchObject({ matched: 6, counts: { pending: 6 } });
  for (const row of await rows(seeded.noTenant)) expect(row).toMatchObject({ status: 'pending', attempts: 0 });

  const discarded = await bulk({
    action: 'discard',
    filter: { topic: h.topics.jobs, tenantId: 'globex', errorClass: 'invalid_json' },
    reason: 'producer bug APX-311, events re-sent',
  });
  expect(discarded.result).toMatchObject({ matched: 4, counts: { discarded: 4, skipped: 0 } });
  expect(discarded.audit).toMatchObject({
    status: 'completed',
    published: 4,
    filter: { action: 'discard', reason: 'producer bug APX-311, events re-sent', tenantId: 'globex' },
  });
  for (const row of await rows(seeded.badJson)) {
    expect(row).toMatchObject({ status: 'discarded', discard_reason: 'producer bug APX-311, events re-sent' });
  }
  // Settled: a retry of the same filter finds nothing to act on, and the rows stay.
  const again = await bulk({ action: 'retry', filter: { topic: h.topics.jobs, errorClass: 'invalid_json' } });
  expect(again.result).toMatchObject({ matched: 0, done: 0 });
  expect(await rows(seeded.badJson)).toHaveLength(4);
});

it('acts on each entry once per bulk action when an activity is run again, and never past the pinned id', async () => {
  const activities = createActivities(activityDeps(h));
  // A topic of their own (dead letters need no Kafka topic): entries without a tenant are in the filter too.
  const topic = 'apexflow.bulk-idempotency';
  const seeded = await seedDeadLetters(h.pool, topic, { noTenant: 3, fixable: 2 });
  const filter = { topic };
  const plan = await activities.planDlqBulk({ action: 'retry', filter });
  expect(plan).toMatchObject({ matched: 5, eligible: 5 });
  // Written after the plan: outside this action.
  const late = await seedDeadLetters(h.pool, topic, { fixable: 1 });
  const page = await activities.readDlqBulkPage({
    action: 'retry',
    filter,
    bulkId: 'bulk-a',
    afterId: 0,
    maxId: plan.max_id!,
    limit: 100,
  });
  expect(page).toEqual([...seeded.fixable, ...seeded.noTenant].sort((a, b) => a - b));
  expect(page).not.toContain(late.fixable[0]);

  // The same call twice, as a retried activity would make it: the second reports the first's outcomes.
  const input = { ids: page, now: Date.now(), force: true, bulkId: 'bulk-a' };
  const first = await activities.retryDlqEntries(input);
  const second = await activities.retryDlqEntries(input);
  expect(first).toEqual({ resolved: 2, retrying: 3, parked: 0, skipped: 0 });
  expect(second).toEqual(first);
  for (const row of await rows(seeded.noTenant)) expect(row.attempts).toBe(1);
  // Done by this action: not read again.
  expect(
    await activities.readDlqBulkPage({
      action: 'retry',
      filter,
      bulkId: 'bulk-a',
      afterId: 0,
      maxId: plan.max_id!,
      limit: 9,
    }),
  ).toEqual([]);

  const park = { action: 'park' as const, ids: seeded.noTenant, bulkId: 'bulk-b', now: Date.now() };
  expect(await activities.changeDlqBulkStatus(park)).toEqual({ parked: 3, skipped: 0 });
  expect(await activities.changeDlqBulkStatus(park)).toEqual({ parked: 3, skipped: 0 });
});

it('classifies dead letters written before error classes (the online step of migration 015)', async () => {
  const seeded = await seedDeadLetters(h.pool, h.topics.leads, { fixable: 2, badJson: 2, tenant: 'legacy' });
  const all = [...seeded.fixable, ...seeded.badJson];
  await h.pool.query('UPDATE event_dlq SET error_class = NULL WHERE id = ANY($1)', [all]);
  expect(await classifyDeadLetters(h.pool, 1)).toBe(4);
  expect((await rows(all)).map((r) => r.error_class)).toEqual([
    'db_error:check_violation:bar_block',
    'db_error:check_violation:bar_block',
    'invalid_json',
    'invalid_json',
  ]);
  expect(await classifyDeadLetters(h.pool)).toBe(0);
});

import {
  ContinueAsNew,
  continueAsNew,
  isCancellation,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { auditOptions, publishOptions } from './activity-options';
import {
  MAX_DLQ_BULK_PAGE,
  dlqBulkProgressQuery,
  type DlqBulkCounts,
  type DlqBulkInput,
  type DlqBulkProgress,
  type DlqBulkResult,
  type DlqBulkState,
} from './definitions';
import { recordFailure } from './replay-event';

const { planDlqBulk, readDlqBulkPage, changeDlqBulkStatus, retryDlqEntries } =
  proxyActivities<Activities>(publishOptions);
const { recordReplayStarted, recordReplayFinished } = proxyActivities<Activities>(auditOptions);

/** Entries per call of the DLQ retry activity (each one a transaction through the journal's parser). */
const RETRY_CHUNK = 100;

/**
 * A bulk action on dead letters (retry now, discard, park, unpark) over every entry of a filter that existed when it
 * started: planned (counted, the newest id pinned), then a page at a time in id order. Each entry is acted on once by
 * this workflow even when an activity is retried (event_dlq.bulk_action_id); retry-now goes through the DLQ retry's
 * own activity. Progress: dlqBulkProgressQuery and the audit row (replay_audit kind dlq_bulk). Long runs continue as
 * new, carrying cursor and counts.
 */
export async function dlqBulkWorkflow(input: DlqBulkInput): Promise<DlqBulkResult> {
  const { workflowId, runId } = workflowInfo();
  const pageSize = Math.max(1, Math.min(input.pageSize ?? 200, MAX_DLQ_BULK_PAGE));
  const pagesPerRun = Math.max(1, input.pagesPerRun ?? 100);
  const { action, filter } = input;
  let finished: DlqBulkProgress['status'] | undefined;
  let state: DlqBulkState | undefined = input.state;
  const progress = (): DlqBulkProgress => {
    const counts = state?.counts ?? emptyCounts();
    return {
      status: finished ?? 'running',
      action,
      matched: state?.matched ?? 0,
      done: Object.values(counts).reduce((a, b) => a + b, 0),
      cursor: state?.cursor ?? 0,
      pages: state?.pages ?? 0,
      counts,
    };
  };
  setHandler(dlqBulkProgressQuery, progress);

  try {
    if (!state) {
      await recordReplayStarted({
        workflowId,
        runId,
        kind: 'dlq_bulk',
        source: input.source,
        requestedBy: input.requestedBy,
        tenantId: input.tenantScope,
        filter: { action, ...filter, ...(input.reason ? { reason: input.reason } : {}) },
      });
      const plan = await planDlqBulk({ action, filter });
      state = { maxId: plan.max_id, cursor: 0, matched: plan.eligible, pages: 0, counts: emptyCounts() };
    }
    for (let pagesThisRun = 0; state.maxId !== null; pagesThisRun++) {
      if (pagesThisRun >= pagesPerRun || workflowInfo().continueAsNewSuggested) {
        await continueAsNew<typeof dlqBulkWorkflow>({ ...input, state });
      }
      const ids = await readDlqBulkPage({
        action,
        filter,
        bulkId: workflowId,
        afterId: state.cursor,
        maxId: state.maxId,
        limit: pageSize,
      });
      if (ids.length === 0) break;
      if (action === 'retry') {
        for (let i = 0; i < ids.length; i += RETRY_CHUNK) {
          const chunk = ids.slice(i, i + RETRY_CHUNK);
          add(state.counts, await retryDlqEntries({ ids: chunk, now: Date.now(), force: true, bulkId: workflowId }));
        }
      } else {
        add(
          state.counts,
          await changeDlqBulkStatus({ action, ids, bulkId: workflowId, reason: input.reason, now: Date.now() }),
        );
      }
      state.cursor = ids[ids.length - 1];
      state.pages += 1;
    }
  } catch (err) {
    if (err instanceof ContinueAsNew) throw err;
    finished = isCancellation(err) ? 'cancelled' : 'failed';
    await recordFailure(workflowId, err, state?.matched ?? 0, outcome(action, state?.counts ?? emptyCounts()));
    throw err;
  }
  finished = 'completed';
  await recordReplayFinished({
    workflowId,
    status: finished,
    matched: state.matched,
    ...outcome(action, state.counts),
  });
  const { status: _status, ...rest } = progress();
  return { status: 'completed', workflow_id: workflowId, ...rest };
}

function emptyCounts(): DlqBulkCounts {
  return { pending: 0, retrying: 0, resolved: 0, parked: 0, discarded: 0, skipped: 0 };
}

function add(counts: DlqBulkCounts, more: Partial<DlqBulkCounts>): void {
  for (const [key, n] of Object.entries(more) as [keyof DlqBulkCounts, number][]) counts[key] += n;
}

/**
 * The audit row's counts: `published` the entries the action did what it was asked to (resolved for a retry), `failed`
 * those a retry could still not journal (backing off or parked again).
 */
function outcome(action: DlqBulkInput['action'], counts: DlqBulkCounts): { published: number; failed: number } {
  if (action === 'retry') return { published: counts.resolved, failed: counts.retrying + counts.parked };
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  return { published: total - counts.skipped, failed: 0 };
}

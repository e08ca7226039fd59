import { proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { auditOptions, publishOptions } from './activity-options';
import type { DlqRetryInput, DlqRetryResult } from './definitions';
import { recordFailure } from './replay-event';

const { findDueDlqEntries, retryDlqEntries } = proxyActivities<Activities>(publishOptions);
const { recordReplayStarted, recordReplayFinished } = proxyActivities<Activities>(auditOptions);

const CHUNK = 100;

/**
 * Retries dead letters: those due now (scheduled runs), or exactly the given ones (an operator's retry). Each entry
 * backs off exponentially between attempts and is parked after the maximum; the clock is workflow time.
 */
export async function dlqRetryWorkflow(input: DlqRetryInput): Promise<DlqRetryResult> {
  const { workflowId, runId } = workflowInfo();
  await recordReplayStarted({
    workflowId,
    runId,
    kind: 'dlq_retry',
    source: input.source,
    requestedBy: input.requestedBy,
    filter: input.entryIds ? { entry_ids: input.entryIds } : { due: true },
  });
  const now = Date.now();
  const totals = { resolved: 0, retrying: 0, parked: 0, skipped: 0 };
  let ids: number[] = [];
  try {
    ids = input.entryIds ?? (await findDueDlqEntries({ now, limit: input.limit ?? 1000 }));
    for (let i = 0; i < ids.length; i += CHUNK) {
      const result = await retryDlqEntries({ ids: ids.slice(i, i + CHUNK), now, force: input.entryIds !== undefined });
      for (const key of Object.keys(totals) as (keyof typeof totals)[]) totals[key] += result[key];
    }
  } catch (err) {
    await recordFailure(workflowId, err, ids.length, { published: totals.resolved, failed: totals.parked });
    throw err;
  }
  await recordReplayFinished({
    workflowId,
    status: 'completed',
    matched: ids.length,
    published: totals.resolved,
    failed: totals.retrying + totals.parked,
  });
  return { status: 'completed', workflow_id: workflowId, attempted: ids.length - totals.skipped, ...totals };
}

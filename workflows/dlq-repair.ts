import { proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { auditOptions, publishOptions } from './activity-options';
import { MAX_REPAIR_ENTRIES, type DlqRepairInput, type DlqRepairResult } from './definitions';
import { failureMessage } from './failure-message';

// startDlqRepair pins and counts the selection (a scan of event_dlq bounded only by the statement timeout, 30 s):
// not audit bookkeeping, it runs under the options of bulk actions' plan (planDlqBulk). Activity options are not part
// of a workflow's history match (an activity is replayed by its type and sequence), so running repairs are unaffected.
const { repairDlqPage, startDlqRepair } = proxyActivities<Activities>(publishOptions);
const { finishDlqRepair } = proxyActivities<Activities>(auditOptions);

const PAGE_SIZE = 100;

/**
 * Applies a repair (edit-and-retry) to the dead letters it selects, a page at a time in id order up to the newest id
 * they had when it started. Each page is one activity call, retried with backoff; an entry is journaled once however
 * often a page is retried (activities/dlq-repair.ts). At most MAX_REPAIR_ENTRIES entries, so the history is bounded.
 * The repair's id is the workflow id.
 */
export async function dlqRepairWorkflow(input: DlqRepairInput): Promise<DlqRepairResult> {
  const { workflowId: repairId } = workflowInfo();
  const { selection, edit, tenantScope } = input;
  const limit = input.pageSize ?? PAGE_SIZE;
  try {
    const { maxId } = await startDlqRepair({
      repairId,
      selection,
      edit,
      tenantScope,
      requestedBy: input.requestedBy,
      reason: input.reason,
    });
    let cursor = 0;
    for (let pages = 0; pages < Math.ceil(MAX_REPAIR_ENTRIES / limit); pages++) {
      const page = await repairDlqPage({
        repairId,
        selection,
        edit,
        tenantScope,
        cursor,
        maxId,
        limit,
        now: Date.now(),
      });
      cursor = page.cursor;
      if (page.done) break;
    }
  } catch (err) {
    await finishDlqRepair({ repairId, status: 'failed', error: failureMessage(err) });
    throw err;
  }
  const counts = await finishDlqRepair({ repairId, status: 'completed' });
  return { status: 'completed', repair_id: repairId, workflow_id: repairId, ...counts };
}

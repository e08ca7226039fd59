import { patched, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { auditOptions, maintenanceOptions } from './activity-options';
import type { MaintenanceInput, MaintenanceResult, MaintenanceStepResult } from './definitions';
import { failureMessage } from './failure-message';

const {
  createJournalPartitions,
  planJournalRetention,
  archiveRetentionStep,
  applyRetentionStep,
  expireDeadLetters,
  pruneRemovedRecords,
} = proxyActivities<Activities>(maintenanceOptions);
const { maintenanceStarted, maintenanceFinished } = proxyActivities<Activities>(auditOptions);

/**
 * Journal maintenance, on a Temporal Schedule (and on demand): partitions created ahead (strays adopted), then every
 * dead letters past their topic's retention deleted and notes of removed records Kafka can no longer deliver
 * forgotten; then every retention step — the expired partition or topic slice archived and verified, then dropped or
 * deleted.
 * One step at a time, each recorded in lifecycle_audit; the clock is workflow time.
 */
export async function journalMaintenanceWorkflow(input: MaintenanceInput): Promise<MaintenanceResult> {
  const { workflowId } = workflowInfo();
  await maintenanceStarted({ workflowId, requestedBy: input.requestedBy, request: { ...input } });
  const steps: MaintenanceStepResult[] = [];
  let created: string[] = [];
  let deadLetters = 0;
  try {
    const now = Date.now();
    created = (await createJournalPartitions({ workflowId, now })).map((p) => p.name);
    // Dead letters first: a journal step that needs an operator (a segment that no longer verifies) must not keep
    // every dead letter past its retention. Runs recorded before dead-letter retention go on without these steps.
    if (!input.dryRun && patched('dead-letter-retention')) {
      deadLetters = await expireDeadLetters({ workflowId, now });
      await pruneRemovedRecords({ workflowId, now });
    }
    for (const step of await planJournalRetention({ now })) {
      const result: MaintenanceStepResult = {
        action: step.action,
        partition: step.partition,
        ...(step.action === 'delete_rows' ? { topic: step.topic } : {}),
        segment: null,
        rows: 0,
        applied: false,
      };
      steps.push(result);
      if (input.dryRun) continue;
      const archived = await archiveRetentionStep({ workflowId, step });
      Object.assign(result, archived);
      if (archived.segment === null) continue;
      await applyRetentionStep({ workflowId, step, segment: archived.segment });
      result.applied = true;
    }
  } catch (err) {
    await maintenanceFinished({ workflowId, status: 'failed', error: failureMessage(err) });
    throw err;
  }
  await maintenanceFinished({ workflowId, status: 'completed' });
  return {
    status: 'completed',
    workflow_id: workflowId,
    partitions_created: created,
    steps,
    dead_letters_deleted: deadLetters,
  };
}

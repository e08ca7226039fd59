import {
  CancellationScope,
  isCancellation,
  patched,
  proxyActivities,
  proxyLocalActivities,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { auditOptions, publishOptions } from './activity-options';
import type { ReplayEventInput, ReplayEventResult } from './definitions';
import { failureMessage } from './failure-message';
import { replayOptions } from './replay-options';

const { replayEvent } = proxyActivities<Activities>(publishOptions);
const audit = proxyActivities<Activities>(auditOptions);
const localAudit = proxyLocalActivities<Activities>(auditOptions);
type RecordFinished = Activities['recordReplayFinished'];

/**
 * Replays one journal row to its topic (or targetTopic) with lineage, and audits it. The two audit writes run as
 * local activities, inside the workflow's own tasks: a single replay then takes two workflow tasks instead of four,
 * each of which waits for the server to dispatch it. Histories recorded before that change (audit writes as plain
 * activities) still replay the way they were recorded.
 */
export async function replayEventWorkflow(input: ReplayEventInput): Promise<ReplayEventResult> {
  const { workflowId, runId } = workflowInfo();
  const { recordReplayStarted, recordReplayFinished } = patched('audit-as-local-activities') ? localAudit : audit;
  await recordReplayStarted({
    workflowId,
    runId,
    kind: 'single',
    source: input.source,
    requestedBy: input.requestedBy,
    tenantId: input.tenantId,
    eventId: input.eventId,
    filter: { ...(input.targetTopic ? { target_topic: input.targetTopic } : {}), ...replayOptions(input) },
  });
  try {
    const replayed = await replayEvent({
      eventId: input.eventId,
      tenantId: input.tenantId,
      source: input.source,
      replayId: workflowId,
      targetTopic: input.targetTopic,
      ...replayOptions(input),
    });
    await recordReplayFinished({ workflowId, status: 'completed', matched: 1, published: 1, failed: 0 });
    return { status: 'replayed', ...replayed, workflow_id: workflowId };
  } catch (err) {
    await recordFailure(workflowId, err, 1, undefined, recordReplayFinished);
    throw err;
  }
}

/** Marks the audit row failed or cancelled, even while the workflow itself is being cancelled. */
export async function recordFailure(
  workflowId: string,
  err: unknown,
  matched: number,
  counts: { published: number; failed: number } = { published: 0, failed: matched },
  recordFinished: RecordFinished = audit.recordReplayFinished,
): Promise<void> {
  const cancelled = isCancellation(err);
  await CancellationScope.nonCancellable(() =>
    recordFinished({
      workflowId,
      status: cancelled ? 'cancelled' : 'failed',
      matched,
      ...counts,
      error: cancelled ? 'cancelled by operator' : failureMessage(err),
    }),
  );
}

import { CancellationScope, isCancellation, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { auditOptions, publishOptions } from './activity-options';
import type { ReplayEventInput, ReplayEventResult } from './definitions';

const { replayEvent } = proxyActivities<Activities>(publishOptions);
const { recordReplayStarted, recordReplayFinished } = proxyActivities<Activities>(auditOptions);

/** Replays one journal row to its topic (or targetTopic) with lineage, and audits it. */
export async function replayEventWorkflow(input: ReplayEventInput): Promise<ReplayEventResult> {
  const { workflowId, runId } = workflowInfo();
  await recordReplayStarted({
    workflowId,
    runId,
    kind: 'single',
    source: input.source,
    requestedBy: input.requestedBy,
    tenantId: input.tenantId,
    eventId: input.eventId,
    filter: input.targetTopic ? { target_topic: input.targetTopic } : {},
  });
  try {
    const replayed = await replayEvent({
      eventId: input.eventId,
      tenantId: input.tenantId,
      source: input.source,
      replayId: workflowId,
      targetTopic: input.targetTopic,
    });
    await recordReplayFinished({ workflowId, status: 'completed', matched: 1, published: 1, failed: 0 });
    return { status: 'replayed', ...replayed, workflow_id: workflowId };
  } catch (err) {
    await recordFailure(workflowId, err, 1);
    throw err;
  }
}

/** Marks the audit row failed or cancelled, even while the workflow itself is being cancelled. */
export async function recordFailure(
  workflowId: string,
  err: unknown,
  matched: number,
  counts: { published: number; failed: number } = { published: 0, failed: matched },
): Promise<void> {
  const cancelled = isCancellation(err);
  const cause = (err as { cause?: { message?: string } }).cause;
  const message = cause?.message ?? (err as Error).message;
  await CancellationScope.nonCancellable(() =>
    recordReplayFinished({
      workflowId,
      status: cancelled ? 'cancelled' : 'failed',
      matched,
      ...counts,
      error: cancelled ? 'cancelled by operator' : message,
    }),
  );
}

import { ApplicationFailure, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { auditOptions, publishOptions } from './activity-options';
import {
  MAX_BATCH_IDS,
  type BatchReplayInput,
  type BatchReplayResult,
  type ErasedEvent,
  type RefusedEvent,
} from './definitions';
import { addRefusedTopics, refusedTopicsNote } from './refused-topics';
import { recordFailure } from './replay-event';
import { replayOptions } from './replay-options';

const { replayBatchPage } = proxyActivities<Activities>(publishOptions);
const { recordReplayStarted, recordReplayFinished } = proxyActivities<Activities>(auditOptions);

/**
 * Replays a list of journal ids, a page per activity; unknown ids are reported, not fatal, and so are events refused
 * or that the transform could not apply to (in `refused`, with the reason).
 */
export async function batchReplayWorkflow(input: BatchReplayInput): Promise<BatchReplayResult> {
  const { workflowId, runId } = workflowInfo();
  const unique = [...new Set(input.ids)];
  // Per-key ordering: the journal's order, whatever order the ids were given in.
  const ids = input.ordering === 'per_key' ? unique.sort((a, b) => a - b) : unique;
  const options = replayOptions(input);
  if (ids.length > MAX_BATCH_IDS) {
    throw ApplicationFailure.nonRetryable(
      `At most ${MAX_BATCH_IDS} ids per batch, got ${ids.length}`,
      'InvalidRequest',
    );
  }
  const pageSize = input.pageSize ?? 500;
  await recordReplayStarted({
    workflowId,
    runId,
    kind: 'batch',
    source: input.source,
    requestedBy: input.requestedBy,
    tenantId: input.tenantId,
    filter: { ids: ids.length, ...(input.targetTopic ? { target_topic: input.targetTopic } : {}), ...options },
  });
  let published = 0;
  const unknown: number[] = [];
  const refused: RefusedEvent[] = [];
  const refusedTopics: Record<string, number> = {};
  const erased: ErasedEvent[] = [];
  try {
    for (let i = 0; i < ids.length; i += pageSize) {
      const page = await replayBatchPage({
        ids: ids.slice(i, i + pageSize),
        tenantId: input.tenantId,
        source: input.source,
        replayId: workflowId,
        targetTopic: input.targetTopic,
        ...options,
      });
      published += page.published;
      unknown.push(...page.unknown);
      refused.push(...page.refused);
      addRefusedTopics(refusedTopics, page.refusedTopics);
      // Pages of histories recorded before erasure existed have no erased list.
      erased.push(...(page.erased ?? []));
    }
  } catch (err) {
    await recordFailure(workflowId, err, ids.length, { published, failed: ids.length - published });
    throw err;
  }
  await recordReplayFinished({
    workflowId,
    status: 'completed',
    matched: ids.length - unknown.length - erased.length,
    published,
    failed: refused.length,
    error: refusedTopicsNote(refusedTopics),
  });
  return {
    status: 'completed',
    workflow_id: workflowId,
    requested: ids.length,
    published,
    unknown_ids: unknown,
    refused,
    erased,
  };
}

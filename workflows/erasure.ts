import { CancellationScope, proxyActivities, workflowInfo, type ActivityOptions } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { PERMANENT_FAILURES } from '../journal/kinds';
import { auditOptions } from './activity-options';
import { failureMessage } from './failure-message';

/**
 * An erasure to run. The subject's value is not here (the workflow's input and history are kept by Temporal): the API
 * stores it in Postgres under its salted hash, the activities read it there, and the last step deletes it.
 */
export interface ErasureInput {
  subjectHash: string;
  requestedBy?: string;
  /** Ids per delete statement (default 10,000). */
  windowIds?: number;
}

export interface ErasureResult {
  status: 'completed';
  erasure_id: string;
  journal_rows: number;
  dlq_rows: number;
  archive_segments: number;
  archive_rows: number;
}

/**
 * Passes over the whole journal or archive: they heartbeat every window or thousand rows and resume from the last
 * heartbeat, so the start-to-close timeout only bounds one attempt; they retry until the store is back.
 */
const passOptions: ActivityOptions = {
  startToCloseTimeout: '6h',
  heartbeatTimeout: '1m',
  retry: {
    initialInterval: '1s',
    backoffCoefficient: 2,
    maximumInterval: '10m',
    nonRetryableErrorTypes: [...PERMANENT_FAILURES],
  },
};

const { eraseRows, eraseArchiveRows } = proxyActivities<Activities>(passOptions);
const { recordErasureStarted, recordErasureFinished } = proxyActivities<Activities>({
  ...auditOptions,
  retry: { ...auditOptions.retry, nonRetryableErrorTypes: [...PERMANENT_FAILURES] },
});

/**
 * Erases a tenant's or a data subject's rows everywhere this service keeps them (docs/lifecycle.md, "Erasure"): the
 * journal (erased ids recorded, so replays of them answer 410), the DLQ, then every archived segment holding one;
 * then the journal and DLQ once more, whole, for rows committed meanwhile. Whole, not from where the first pass
 * ended: ids are taken when a row is inserted, not when it commits, so a row committed after the first pass may hold
 * an id below its end. The audit
 * (lifecycle_audit, kind erasure) holds the subject's hash and the counts, never its value.
 */
export async function erasureWorkflow(input: ErasureInput): Promise<ErasureResult> {
  const erasureId = workflowInfo().workflowId;
  const ref = { erasureId, subjectHash: input.subjectHash };
  const windowIds = input.windowIds ?? 10_000;
  await recordErasureStarted({ ...ref, requestedBy: input.requestedBy });
  try {
    await eraseRows({ ...ref, table: 'event_journal', afterId: 0, windowIds });
    await eraseRows({ ...ref, table: 'event_dlq', afterId: 0, windowIds });
    await eraseArchiveRows(ref);
    await eraseRows({ ...ref, table: 'event_journal', afterId: 0, windowIds });
    await eraseRows({ ...ref, table: 'event_dlq', afterId: 0, windowIds });
  } catch (err) {
    const error = failureMessage(err);
    await CancellationScope.nonCancellable(() => recordErasureFinished({ ...ref, status: 'failed', error }));
    throw err;
  }
  const counts = await recordErasureFinished({ ...ref, status: 'completed' });
  return {
    status: 'completed',
    erasure_id: erasureId,
    journal_rows: counts.journal.rows,
    dlq_rows: counts.dlq.rows,
    archive_segments: counts.archive.segments,
    archive_rows: counts.archive.rows,
  };
}

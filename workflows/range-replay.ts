import {
  condition,
  ContinueAsNew,
  continueAsNew,
  isCancellation,
  proxyActivities,
  setHandler,
  sleep,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { auditOptions, pageOptions } from './activity-options';
import {
  pauseSignal,
  progressQuery,
  resumeSignal,
  setRateSignal,
  type RangeReplayInput,
  type RangeReplayResult,
  type RangeState,
  type ReplayProgress,
} from './definitions';
import { recordFailure } from './replay-event';

const { planRange, countRangeEvents, replayRangePage } = proxyActivities<Activities>(pageOptions);
const { recordReplayStarted, recordReplayFinished } = proxyActivities<Activities>(auditOptions);

/** Pages per run before continuing as new, so that history stays small however long the range. */
export const PAGES_PER_RUN = 200;

/**
 * Replays every journal row in [start, end) matching the filters, a keyset page per activity. Pause, resume and a
 * new rate arrive as signals; cancel is Temporal cancellation; progress is a query. Continues as new when the
 * history grows, carrying its cursor and counters.
 */
export async function rangeReplayWorkflow(input: RangeReplayInput): Promise<RangeReplayResult> {
  const { workflowId, runId } = workflowInfo();
  const selection = {
    start: input.start,
    end: input.end,
    tenantId: input.tenantId,
    topic: input.topic,
    includeReplays: input.includeReplays ?? false,
  };
  if (!input.state) {
    await recordReplayStarted({
      workflowId,
      runId,
      kind: 'range',
      source: input.source,
      requestedBy: input.requestedBy,
      tenantId: input.tenantId,
      filter: { ...selection, target_topic: input.targetTopic, dry_run: input.dryRun ?? false },
    });
  }
  if (input.dryRun) {
    const counts = await countRangeEvents(selection);
    await recordReplayFinished({ workflowId, status: 'completed', matched: counts.matched, published: 0, failed: 0 });
    return { status: 'dry_run', workflow_id: workflowId, ...counts };
  }

  const planned = input.state ? undefined : await planRange(selection);
  const state: RangeState = input.state ?? {
    cursor: 0,
    maxId: planned!.filter.maxId,
    matched: planned!.total,
    published: 0,
    failed: 0,
    pages: 0,
    startedAt: Date.now(),
    paused: false,
    maxEventsPerSecond: input.maxEventsPerSecond ?? null,
  };
  let finished: ReplayProgress['status'] | undefined;
  const progress = (): ReplayProgress => {
    const seconds = Math.max(0.001, (Date.now() - state.startedAt) / 1000);
    return {
      status: finished ?? (state.paused ? 'paused' : 'running'),
      matched: state.matched,
      published: state.published,
      failed: state.failed,
      cursor: state.cursor,
      pages: state.pages,
      eventsPerSecond: Math.round((state.published / seconds) * 10) / 10,
      maxEventsPerSecond: state.maxEventsPerSecond,
    };
  };
  setHandler(progressQuery, progress);
  setHandler(pauseSignal, () => void (state.paused = true));
  setHandler(resumeSignal, () => void (state.paused = false));
  setHandler(setRateSignal, (rate) => void (state.maxEventsPerSecond = rate && rate > 0 ? rate : null));

  const filter = { ...selection, maxId: state.maxId };
  const pageSize = input.pageSize ?? 500;
  try {
    for (let pagesThisRun = 0; ; pagesThisRun++) {
      if (pagesThisRun >= PAGES_PER_RUN || workflowInfo().continueAsNewSuggested) {
        await continueAsNew<typeof rangeReplayWorkflow>({ ...input, state });
      }
      await condition(() => !state.paused);
      const rate = state.maxEventsPerSecond;
      const began = Date.now();
      const page = await replayRangePage({
        filter,
        cursor: state.cursor,
        limit: rate ? Math.max(1, Math.min(pageSize, Math.ceil(rate))) : pageSize,
        source: input.source,
        replayId: workflowId,
        targetTopic: input.targetTopic,
      });
      state.cursor = page.cursor;
      state.published += page.published;
      state.failed += page.failed;
      state.pages += 1;
      if (page.done) break;
      if (rate) {
        const due = (page.read / rate) * 1000 - (Date.now() - began);
        if (due > 0) await sleep(due);
      }
    }
  } catch (err) {
    if (err instanceof ContinueAsNew) throw err;
    finished = isCancellation(err) ? 'cancelled' : 'failed';
    await recordFailure(workflowId, err, state.matched, { published: state.published, failed: state.failed });
    throw err;
  }
  finished = 'completed';
  await recordReplayFinished({
    workflowId,
    status: 'completed',
    matched: state.matched,
    published: state.published,
    failed: state.failed,
  });
  const { status: _status, ...counts } = progress();
  return { status: 'completed', workflow_id: workflowId, ...counts };
}

import {
  condition,
  ContinueAsNew,
  continueAsNew,
  isCancellation,
  patched,
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
import { addRefusedTopics, refusedTopicsNote } from './refused-topics';
import { joinNotes, keptFailures, replayOptions, transformFailuresNote } from './replay-options';
import { recordFailure } from './replay-event';
import { perSecond } from './shard-progress';
import {
  coordinateShards,
  lateUnderPerKey,
  reportDue,
  reportToCoordinator,
  shardable,
  SHARDED_REPLAY_PATCH,
  UNCAPPED_REPORTS_PATCH,
} from './range-shards';

const { planRange, countRangeEvents, replayRangePage, replayArchivePage, planLateArchive } =
  proxyActivities<Activities>(pageOptions);
const { recordReplayStarted, recordReplayFinished } = proxyActivities<Activities>(auditOptions);

/** Activity calls per run before continuing as new, so that history stays small however long the range. */
export const CALLS_PER_RUN = 200;

/**
 * Unthrottled, one activity call replays consecutive pages for about this long: the ~35 ms a call costs (a workflow
 * task, an activity dispatch) is paid once per chunk instead of once per page, and pause, a new rate or cancel still
 * take effect within about this long. Far under pageOptions' start-to-close timeout; its heartbeat timeout need only
 * cover one page, since a chunk heartbeats after each.
 */
export const CHUNK_BUDGET_MS = 2_000;

/** Most pages per unthrottled call (default of `pagesPerCall`): bounds a chunk when pages are quick. */
export const PAGES_PER_CALL = 100;

/**
 * One call of the archive pass reads on for about this long (or ARCHIVE_PAGES_PER_CALL pages). Longer than a journal
 * chunk because a new call reopens its segment and reads past the rows already sent; pause and a new rate apply
 * within about this long, cancel at the next page (it arrives with a heartbeat).
 */
export const ARCHIVE_CHUNK_BUDGET_MS = 20_000;

/** Most pages per call of the archive pass (default when `pagesPerCall` is not given). */
export const ARCHIVE_PAGES_PER_CALL = 1_000;

/** Marks histories whose range replay may read the archive (cold replay) before the journal. */
export const COLD_REPLAY_PATCH = 'cold-replay';

/**
 * Marks histories whose audit row records a failed plan or dry-run count (e.g. Postgres refusing the payload filter on
 * the stored data: UnprocessableData). Before, such a replay failed with its audit row left running.
 */
export const PLAN_FAILURE_PATCH = 'record-plan-failure';

/**
 * Marks histories in which a rate change (setRateSignal) cuts the wait between two rate-limited chunks short and sets
 * it again from the new rate. Before, the wait of the old rate ran out first (200 s per event for a child given
 * 0.005/s, whatever the operator then asked).
 */
export const RATE_CHANGE_CUTS_WAIT_PATCH = 'rate-change-cuts-wait';

/** Runs a step before the pages (planning, a dry run's count); if it fails, the audit row says so and why. */
async function recordingFailure<T>(workflowId: string, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (err) {
    if (patched(PLAN_FAILURE_PATCH)) await recordFailure(workflowId, err, 0);
    throw err;
  }
}

/**
 * Replays every row received in [start, end) matching the filters: first the rows archived out of the journal
 * (docs/lifecycle.md, "Cold replay"), segment by segment, then the journal's, in keyset pages, then the archive's
 * late segments (deferred at planning, or archived while this ran). A chunk of consecutive pages per activity call,
 * or under a rate limit one page of at most a second's worth per journal call (an archive call spaces its pages
 * itself) followed by a durable timer. Pause, resume and a new rate arrive as signals and apply between calls; cancel
 * is Temporal cancellation; progress is a query. Continues as new when the history grows, carrying its cursor and
 * counters. A range of at least `sharding.threshold` events is split into children of this same workflow, each
 * replaying one shard (`shard`) under this replay's id (workflows/range-shards.ts).
 */
export async function rangeReplayWorkflow(input: RangeReplayInput): Promise<RangeReplayResult> {
  const { workflowId, runId } = workflowInfo();
  const options = replayOptions(input);
  const selection = {
    start: input.start,
    end: input.end,
    tenantId: input.tenantId,
    topic: input.topic,
    includeReplays: input.includeReplays ?? false,
    // Absent rather than undefined, so that activity inputs of runs without a filter stay as they were.
    ...(input.payloadFilter === undefined ? {} : { payloadFilter: input.payloadFilter }),
    ...(input.shard?.by === 'key' ? { keyShard: { index: input.shard.index, of: input.shard.of } } : {}),
  };
  // A shard replays under its coordinator's id: one replay, one lineage, one replay-once index, one audit row.
  const replayId = input.shard?.replayId ?? workflowId;
  if (!input.state) {
    await recordReplayStarted({
      workflowId,
      runId,
      kind: 'range',
      source: input.source,
      requestedBy: input.requestedBy,
      tenantId: input.tenantId,
      filter: { ...selection, target_topic: input.targetTopic, dry_run: input.dryRun ?? false, ...options },
    });
  }
  if (input.dryRun) {
    // Arguments only when asked for: the activity inputs of dry runs without them stay as they were.
    const counts = await recordingFailure(workflowId, () =>
      input.transform || input.ordering
        ? countRangeEvents(selection, input.transform, input.ordering)
        : countRangeEvents(selection),
    );
    await recordReplayFinished({ workflowId, status: 'completed', matched: counts.matched, published: 0, failed: 0 });
    return { status: 'dry_run', workflow_id: workflowId, ...counts };
  }

  const planned = input.state
    ? undefined
    : await recordingFailure(workflowId, () =>
        input.ordering ? planRange(selection, input.ordering) : planRange(selection),
      );
  const cold = planned && patched(COLD_REPLAY_PATCH);
  if (planned && shardable(input, planned) && patched(SHARDED_REPLAY_PATCH)) {
    return coordinateShards(rangeReplayWorkflow, input, planned);
  }
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
    ...(cold
      ? {
          archive: {
            segments: planned.segments ?? [],
            position: { index: 0, lastId: 0, generation: 0 },
            deferred: planned.deferred ?? [],
            plannedAt: planned.plannedAt ?? new Date().toISOString(),
            late: false,
          },
        }
      : {}),
  };
  let finished: ReplayProgress['status'] | undefined;
  const progress = (): ReplayProgress => {
    return {
      status: finished ?? (state.paused ? 'paused' : 'running'),
      matched: state.matched,
      published: state.published,
      failed: state.failed,
      cursor: state.cursor,
      pages: state.pages,
      eventsPerSecond: perSecond(state.published, (Date.now() - state.startedAt) / 1000),
      maxEventsPerSecond: state.maxEventsPerSecond,
    };
  };
  setHandler(progressQuery, progress);
  setHandler(pauseSignal, () => void (state.paused = true));
  setHandler(resumeSignal, () => void (state.paused = false));
  setHandler(setRateSignal, (rate) => void (state.maxEventsPerSecond = rate && rate > 0 ? rate : null));

  const filter = { ...selection, maxId: state.maxId };
  const pageSize = input.pageSize ?? 500;
  const pagesPerCall = Math.max(1, input.pagesPerCall ?? PAGES_PER_CALL);
  let reportedAt = Date.now();
  try {
    for (let callsThisRun = 0; ; callsThisRun++) {
      if (callsThisRun >= CALLS_PER_RUN || workflowInfo().continueAsNewSuggested) {
        await continueAsNew<typeof rangeReplayWorkflow>({ ...input, state });
      }
      const archived = state.archive;
      const archivePass = archived !== undefined && archived.position.index < archived.segments.length;
      if (archived?.late && !archivePass) break;
      await condition(() => !state.paused);
      const rate = state.maxEventsPerSecond;
      const began = Date.now();
      const common = {
        filter,
        limit: rate ? Math.max(1, Math.min(pageSize, Math.ceil(rate))) : pageSize,
        source: input.source,
        replayId,
        targetTopic: input.targetTopic,
        tenantScoped: input.tenantScoped,
        ...options,
      };
      const chunk = archivePass
        ? await replayArchivePage({
            ...common,
            segments: archived.segments,
            position: archived.position,
            maxPages: input.pagesPerCall ?? ARCHIVE_PAGES_PER_CALL,
            budgetMs: ARCHIVE_CHUNK_BUDGET_MS,
            maxEventsPerSecond: rate ?? undefined,
          })
        : await replayRangePage({
            ...common,
            cursor: state.cursor,
            maxPages: rate ? 1 : pagesPerCall,
            budgetMs: rate ? undefined : CHUNK_BUDGET_MS,
          });
      if ('position' in chunk) archived!.position = chunk.position;
      else state.cursor = chunk.cursor;
      if (chunk.refusedTopics) addRefusedTopics((state.refusedTopics ??= {}), chunk.refusedTopics);
      if (chunk.transformFailed) state.transformFailed = keptFailures(state.transformFailed, chunk.transformFailed);
      state.published += chunk.published;
      state.failed += chunk.failed;
      state.pages += chunk.pages ?? 1; // results recorded before chunks were one page without a count
      if (input.shard && reportDue(state.startedAt, reportedAt, Date.now(), !patched(UNCAPPED_REPORTS_PATCH))) {
        reportedAt = Date.now();
        const { published, failed, pages, cursor } = state;
        await reportToCoordinator(input.shard, { index: input.shard.index, published, failed, pages, cursor });
      }
      if (!('position' in chunk) && chunk.done) {
        if (!archived) break;
        // Rows maintenance moved out of the journal while this ran, and the segments deferred when it was planned.
        const late = await planLateArchive({
          filter,
          read: archived.segments,
          deferred: archived.deferred,
          plannedAt: archived.plannedAt,
        });
        if (late.length > 0 && input.ordering === 'per_key') throw lateUnderPerKey(late);
        archived.segments.push(...late);
        archived.late = true;
        if (late.length === 0) break;
      }
      if (rate && patched(RATE_CHANGE_CUTS_WAIT_PATCH)) {
        // A rate changed meanwhile (POST /replays/:id/rate) sets the wait again from the new one, at once.
        for (let current: number | null = rate; current !== null; current = state.maxEventsPerSecond) {
          const due = (chunk.read / current) * 1000 - (Date.now() - began);
          if (due <= 0 || !(await condition(() => state.maxEventsPerSecond !== current, due))) break;
        }
      } else if (rate) {
        const due = (chunk.read / rate) * 1000 - (Date.now() - began);
        if (due > 0) await sleep(due);
      }
    }
  } catch (err) {
    if (err instanceof ContinueAsNew) throw err;
    finished = isCancellation(err) ? 'cancelled' : 'failed';
    // A shard has no audit row: its coordinator records how the replay ended.
    if (!input.shard) {
      await recordFailure(workflowId, err, state.matched, { published: state.published, failed: state.failed });
    }
    throw err;
  }
  finished = 'completed';
  if (!input.shard)
    await recordReplayFinished({
      workflowId,
      status: 'completed',
      matched: state.matched,
      published: state.published,
      failed: state.failed,
      error: joinNotes(refusedTopicsNote(state.refusedTopics ?? {}), transformFailuresNote(state.transformFailed)),
    });
  const { status: _status, ...counts } = progress();
  return {
    status: 'completed',
    workflow_id: workflowId,
    ...counts,
    ...(state.refusedTopics ? { refused_topics: state.refusedTopics } : {}),
    ...(state.transformFailed ? { transform_failures: state.transformFailed } : {}),
  };
}

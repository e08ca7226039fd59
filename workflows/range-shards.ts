import {
  ApplicationFailure,
  CancellationScope,
  condition,
  getExternalWorkflowHandle,
  isCancellation,
  ParentClosePolicy,
  patched,
  proxyActivities,
  setHandler,
  sleep,
  startChild,
  workflowInfo,
  type ChildWorkflowHandle,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { MAX_REPLAY_SHARDS } from '../journal/kinds';
import type { PlannedRange } from '../activities/range';
import type { RangeShard } from '../activities/range-shards';
import { auditOptions, pageOptions, shardCountOptions } from './activity-options';
import {
  pauseSignal,
  progressQuery,
  resumeSignal,
  setRateSignal,
  shardReportSignal,
  type RangeReplayInput,
  type RangeReplayResult,
  type RefusedEvent,
  type ReplayProgress,
  type ShardAssignment,
  type ShardProgress,
  type ShardReport,
} from './definitions';
import { addRefusedTopics, refusedTopicsNote } from './refused-topics';
import { joinNotes, keptFailures, transformFailuresNote } from './replay-options';
import { recordFailure } from './replay-event';
import { notBehind, perSecond, shardTotals } from './shard-progress';

const { planShards, planLateArchive } = proxyActivities<Activities>(pageOptions);
const { recordReplayFinished } = proxyActivities<Activities>(auditOptions);
const { shardCounts } = proxyActivities<Activities>(shardCountOptions);

/** Marks histories whose range replay was split into child workflows. */
export const SHARDED_REPLAY_PATCH = 'sharded-range-replay';

/**
 * A child reports its progress after a chunk once this share of its running time has passed since its last report,
 * and never more often than MIN_REPORT_MS. There is no upper bound on the spacing: the reports of a child grow with
 * the logarithm of its running time (about 40 in a day, 50 in a week, 66 in a year), which keeps the coordinator's
 * history, which never continues as new, far below Temporal's limit however long a throttled replay runs, with room
 * for operators' controls (CONTROL_HISTORY_BUDGET). The view stays fresh anyway: GET /replays/:id asks the running
 * children themselves (withChildProgress).
 */
export const REPORT_SHARE = 0.2;
export const MIN_REPORT_MS = 5_000;
/** Marks children that space their reports by REPORT_SHARE with no cap. */
export const UNCAPPED_REPORTS_PATCH = 'shard-reports-uncapped';
/** The rule of runs started before that patch (5% of running time, at most 10 minutes): their histories replay. */
const LEGACY_REPORT_SHARE = 0.05;
const LEGACY_MAX_REPORT_MS = 600_000;

/** Whether a child that started at `startedAt` and last reported at `reportedAt` reports now. */
export function reportDue(startedAt: number, reportedAt: number, now: number, legacy = false): boolean {
  const every = Math.max(MIN_REPORT_MS, (now - startedAt) * (legacy ? LEGACY_REPORT_SHARE : REPORT_SHARE));
  return now - reportedAt >= (legacy ? Math.min(LEGACY_MAX_REPORT_MS, every) : every);
}

/** A child's progress, signalled to its coordinator; a coordinator already closed (cancelled, failed) is ignored. */
export async function reportToCoordinator(shard: ShardAssignment, report: ShardReport): Promise<void> {
  await getExternalWorkflowHandle(shard.replayId)
    .signal(shardReportSignal, report)
    .catch(() => undefined);
}

/**
 * A range is split when asked (input.sharding), large enough, not a dry run and not itself a child, and when none of
 * it is archived: the archive pass reads segments in order and a key's archived events must precede its journaled
 * ones, so a cold range runs as one workflow as before. Rows archived while a sharded replay runs are still read, by a
 * last child (coordinateShards).
 */
export function shardable(input: RangeReplayInput, planned: PlannedRange): boolean {
  const sharding = input.sharding;
  if (!sharding || input.shard || input.dryRun || sharding.shards < 2) return false;
  const cold = (planned.segments?.length ?? 0) + (planned.deferred?.length ?? 0) + (planned.archived ?? 0) > 0;
  return !cold && planned.total >= sharding.threshold;
}

/** Rows of a per_key range archived while it was replayed: sent now, they would follow newer events of their keys. */
export function lateUnderPerKey(late: string[]): ApplicationFailure {
  return ApplicationFailure.nonRetryable(
    `ordering per_key: rows of this range were archived while it was replayed (${late.join(', ')}) and were not sent; replay the range again`,
    'InvalidRequest',
  );
}

/**
 * Marks coordinators that, ended by a cancel or a failure, wait for their children to close and ask them for their
 * counts before writing the audit row (collectFinalCounts).
 */
export const FINAL_COUNTS_PATCH = 'shard-final-counts-queried';
/** How long a cancelled or failed coordinator waits for its children to close. */
export const FINAL_COUNTS_WAIT_MS = 60_000;

type RangeReplay = (input: RangeReplayInput) => Promise<RangeReplayResult>;

/** A child's counts: from its reports while it runs, from its result once it has completed. */
interface ChildCounts extends Omit<ShardReport, 'index'> {
  refused_topics?: Record<string, number>;
  transform_failures?: RefusedEvent[];
}

interface Child {
  id: string;
  assignment: ShardAssignment;
  matched: number;
  state: NonNullable<RangeReplayInput['state']>;
  /** The pause and rate last given to it (in its input or by a signal). */
  applied: { paused: boolean; rate: number | null };
  handle?: ChildWorkflowHandle<RangeReplay>;
  report?: ShardReport;
  done?: ChildCounts;
}

/**
 * The coordinator of a sharded range replay (the parent workflow, its audit row already written): plans the shards,
 * starts one child workflow per shard (rangeReplayWorkflow itself, on the same task queue, so any worker runs them),
 * forwards pause, resume and the rate (split evenly across the children still running) to every child, answers the
 * progress query from the children's reports, and once all have completed reads the rows archived meanwhile in one
 * last child. Children replay under the parent's id (the journal's replay-once index and the lineage are per replay),
 * write no audit row (the API reaches them only through the parent), and continue as new on their own. Cancelling the
 * parent cancels them (its scope, and ParentClosePolicy REQUEST_CANCEL should it end otherwise); a child that fails
 * cancels the others and fails the replay.
 *
 * Progress travels by signal from child to parent: it is then part of the parent's history, so the query answers the
 * same on every worker and after a replay of the history, and the parent needs no timer or activity to poll. The
 * signals are bounded by reportDue; the API freshens the view with the children's own answers (shard-progress.ts).
 */
export async function coordinateShards(
  workflow: RangeReplay,
  input: RangeReplayInput,
  planned: PlannedRange,
): Promise<RangeReplayResult> {
  const { workflowId } = workflowInfo();
  const filter = planned.filter;
  const startedAt = Date.now();
  const control = { paused: false, rate: input.maxEventsPerSecond ?? null };
  const children: Child[] = [];
  let finished: ReplayProgress['status'] | undefined;

  const running = () => children.filter((child) => !child.done);
  const share = () => (control.rate === null ? null : control.rate / Math.max(1, running().length));
  const countsOf = (child: Child): ChildCounts =>
    child.done ?? child.report ?? { published: 0, failed: 0, pages: 0, cursor: child.state.cursor };
  const progress = (): ReplayProgress => {
    const seconds = (Date.now() - startedAt) / 1000;
    const shards = children.map((child): ShardProgress => {
      const { published, failed, pages, cursor } = countsOf(child);
      return {
        workflow_id: child.id,
        status: child.done ? 'completed' : control.paused ? 'paused' : 'running',
        matched: child.matched,
        published,
        failed,
        pages,
        cursor,
        eventsPerSecond: perSecond(published, seconds),
        maxEventsPerSecond: child.done ? null : child.applied.rate,
      };
    });
    return {
      status: finished ?? (control.paused ? 'paused' : 'running'),
      matched: planned.total,
      // 0 as cursor while the shards are being planned (none done yet), the range's maxId once all are done.
      ...shardTotals(shards, children.length > 0 ? filter.maxId : 0),
      maxEventsPerSecond: control.rate,
      shards,
    };
  };
  setHandler(progressQuery, progress);
  setHandler(pauseSignal, () => void (control.paused = true));
  setHandler(resumeSignal, () => void (control.paused = false));
  setHandler(setRateSignal, (rate) => void (control.rate = rate && rate > 0 ? rate : null));
  setHandler(shardReportSignal, (report) => {
    const child = children.find((c) => c.assignment.index === report.index);
    // Reports are cumulative; one that arrives after a newer one (or after the result) is older news.
    if (child && !child.done && report.pages >= (child.report?.pages ?? 0)) child.report = report;
  });

  const add = (assignment: ShardAssignment, matched: number, state: Partial<Child['state']>) => {
    children.push({
      id: `${workflowId}-shard-${assignment.by === 'late_archive' ? 'late' : assignment.index}`,
      assignment,
      matched,
      applied: { paused: false, rate: null }, // set as it starts (runChildren)
      state: {
        cursor: 0,
        maxId: filter.maxId,
        matched,
        published: 0,
        failed: 0,
        pages: 0,
        startedAt,
        paused: false,
        maxEventsPerSecond: null,
        ...state,
      },
    });
  };

  /** Sends each running child the pause and rate it should have, whenever they change, until all have completed. */
  const forward = async () => {
    const stale = (child: Child) =>
      child.handle !== undefined && (child.applied.paused !== control.paused || child.applied.rate !== share());
    for (;;) {
      await condition(() => running().length === 0 || running().some(stale));
      if (running().length === 0) return;
      await Promise.all(
        running()
          .filter(stale)
          .map(async (child) => {
            const before = child.applied;
            child.applied = { paused: control.paused, rate: share() };
            try {
              if (before.paused !== child.applied.paused) {
                await child.handle!.signal(child.applied.paused ? pauseSignal : resumeSignal);
              }
              if (before.rate !== child.applied.rate) await child.handle!.signal(setRateSignal, child.applied.rate);
            } catch {
              // The child completed meanwhile: its result is on its way.
            }
          }),
      );
    }
  };

  /** Starts the children not started yet and waits for every one of them, forwarding controls meanwhile. */
  const runChildren = async () => {
    // Given at start what the forwarder would send them next: every child added by now shares the rate.
    for (const child of running()) {
      child.applied = { paused: control.paused, rate: share() };
      child.state = { ...child.state, paused: child.applied.paused, maxEventsPerSecond: child.applied.rate };
    }
    await Promise.all(
      running().map(async (child) => {
        const { sharding: _sharding, state: _state, ...rest } = input;
        child.handle = await startChild(workflow, {
          workflowId: child.id,
          args: [
            {
              ...rest,
              maxEventsPerSecond: child.applied.rate ?? undefined,
              shard: child.assignment,
              state: child.state,
            },
          ],
          parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL,
        });
      }),
    );
    await Promise.all([
      forward(),
      ...running().map(async (child) => {
        const result = await child.handle!.result();
        if (result.status !== 'completed') throw new Error(`shard ${child.id} ended as ${result.status}`);
        child.done = {
          published: result.published,
          failed: result.failed,
          pages: result.pages,
          cursor: result.cursor,
          refused_topics: result.refused_topics,
          transform_failures: result.transform_failures,
        };
      }),
    ]);
  };

  const scope = new CancellationScope();
  try {
    const of = Math.min(input.sharding!.shards, MAX_REPLAY_SHARDS);
    const shards: RangeShard[] = await planShards(filter, of, input.ordering);
    for (const shard of shards) {
      add({ index: shard.index, of: shard.of, replayId: workflowId, by: shard.by }, shard.events, {
        cursor: shard.after,
        maxId: shard.upTo,
      });
    }
    await scope.run(runChildren);
    // Rows maintenance moved out of the journal while the children ran: read by one last child.
    const late = await planLateArchive({ filter, read: [], deferred: [], plannedAt: planned.plannedAt! });
    if (late.length > 0 && input.ordering === 'per_key') throw lateUnderPerKey(late);
    if (late.length > 0) {
      add({ index: children.length, of: children.length + 1, replayId: workflowId, by: 'late_archive' }, 0, {
        cursor: filter.maxId,
        archive: {
          segments: late,
          position: { index: 0, lastId: 0, generation: 0 },
          deferred: [],
          plannedAt: planned.plannedAt!,
          late: true,
        },
      });
      await scope.run(runChildren);
    }
  } catch (err) {
    scope.cancel();
    // Shown by the progress query from now on, while the children's final counts are collected.
    finished = isCancellation(err) ? 'cancelled' : 'failed';
    if (patched(FINAL_COUNTS_PATCH)) await collectFinalCounts(children.filter((child) => child.handle && !child.done));
    const { published, failed } = progress();
    await recordFailure(workflowId, err, planned.total, { published, failed });
    throw err;
  }

  finished = 'completed';
  const refused: Record<string, number> = {};
  let transformFailed: RefusedEvent[] | undefined;
  for (const child of children) {
    if (child.done?.refused_topics) addRefusedTopics(refused, child.done.refused_topics);
    transformFailed = keptFailures(transformFailed, child.done?.transform_failures);
  }
  const { status: _status, ...counts } = progress();
  await recordReplayFinished({
    workflowId,
    status: 'completed',
    matched: counts.matched,
    published: counts.published,
    failed: counts.failed,
    error: joinNotes(refusedTopicsNote(refused), transformFailuresNote(transformFailed)),
  });
  return {
    status: 'completed',
    workflow_id: workflowId,
    ...counts,
    ...(Object.keys(refused).length > 0 ? { refused_topics: refused } : {}),
    ...(transformFailed ? { transform_failures: transformFailed } : {}),
  };
}

/**
 * The counts of children cut short (the coordinator was cancelled, or another child failed): once they have closed,
 * or FINAL_COUNTS_WAIT_MS, each child's own answer replaces its last report, which may be hours old (reports grow
 * rarer the longer a child runs). Runs however the coordinator itself is cancelled; a child that does not answer keeps
 * its last report. The children send nothing for it: a closed workflow answers queries from its history.
 */
async function collectFinalCounts(children: Child[]): Promise<void> {
  if (children.length === 0) return;
  await CancellationScope.nonCancellable(async () => {
    const timer = new CancellationScope();
    const timeout = timer.run(() => sleep(FINAL_COUNTS_WAIT_MS)).catch(() => undefined);
    await Promise.race([Promise.allSettled(children.map((child) => child.handle!.result())), timeout]);
    timer.cancel();
    const answers = await shardCounts(children.map((child) => child.id)).catch(() => []);
    children.forEach((child, i) => {
      const own = answers[i];
      if (own && notBehind(own, child.report)) child.report = { index: child.assignment.index, ...own };
    });
  });
}

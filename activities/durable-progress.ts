import type { Context } from '@temporalio/activity';
import type { Queryable } from '../repository/queryable';
import {
  addSentIds,
  claimSendProgress,
  sweepSendProgress,
  writeSendPage,
  type SendProgressKey,
} from '../repository/send-progress';
import type { ReplayOrdering } from '../journal/kinds';
import { withTimeout } from '../shared/timeout';

/** A write or read of durable progress that Postgres does not answer in this long fails the attempt before its wave. */
export const PROGRESS_SILENCE_MS = 5000;

/**
 * The durable side of a per_key sender's progress (repository/send-progress.ts). A retry resumes from the heartbeat
 * details the server last recorded, and the SDK sends a heartbeat up to a second after it is made, or never (the
 * worker died, or was cut off from Temporal): a retry from those alone could send a key's older event after a newer
 * one (e1, e2, e1, e2; test/unit/attack47-wave-sent-on-unrecorded-progress.test.ts). Written before every wave, the
 * durable progress is at most one wave behind what was sent, so a retry sends at most that wave again: a key may see
 * its last event twice in a row, never an older one after a newer one.
 */
export interface DurableProgress<P> {
  /**
   * Where this attempt resumes: the written progress or its heartbeat details, whichever is further on. Claims the
   * activity's progress for this attempt first (an earlier attempt's writes are refused from then on, and the rows of
   * the workflow's earlier activities are closed); rejects when a later attempt, or a later activity, has claimed.
   */
  resume(db: Queryable): Promise<P | undefined>;
  /**
   * Makes the progress durable before a wave is sent: the page and its progress as a page begins, then only the ids
   * sent since. Rejects, and the wave is not sent, when Postgres refuses or is silent, or the progress is no longer
   * this attempt's (a later attempt claimed it, or the activity is over). Call resume first.
   */
  write(db: Queryable, details: P): Promise<void>;
}

/** How a kind of progress is kept: the page it is in, the ids of that page sent, and the rest. */
export interface ProgressShape<P> {
  page(progress: P): number;
  sent(progress: P): number[];
  /** What is written besides the ids: nothing that may quote a payload (the row outlives erasures' redaction). */
  rest(progress: P): Record<string, unknown>;
  /** The progress from what was written, with what the heartbeat has that the row does not keep. */
  join(rest: Record<string, unknown>, sent: number[], beat: P | undefined): P;
}

/** A range or archive chunk's progress: its pages, the ids of its next page sent; refusal reasons from the heartbeat. */
export const chunkShape = <P extends ChunkProgress>(): ProgressShape<P> => ({
  page: (progress) => progress.pages ?? 0,
  sent: (progress) => progress.pageSent ?? [],
  rest: ({ pageSent: _sent, transformFailed: _reasons, ...rest }) => rest,
  join: (rest, sent, beat) =>
    ({
      ...rest,
      ...(beat?.transformFailed ? { transformFailed: beat.transformFailed } : {}),
      ...(sent.length ? { pageSent: sent } : {}),
    }) as P,
});

/** What chunkShape reads of a chunk's progress. */
export interface ChunkProgress {
  pages?: number;
  pageSent?: number[];
  transformFailed?: unknown[];
}

/** A batch page's progress: the ids sent. */
export const batchShape = {
  page: () => 0,
  sent: (progress) => progress.sent ?? [],
  rest: () => ({}),
  join: (_rest, sent) => ({ sent }),
} satisfies ProgressShape<{ sent?: number[] }>;

/**
 * DurableProgress of the activity running in `ctx`, under per_key ordering. Of two progresses, the one further on has
 * the later page, or more of its ids sent. Attempts are ordered by their scheduled time (Temporal's attempt number
 * starts again at 1 after an activity reset).
 */
export function durableProgress<P>(ctx: Context, shape: ProgressShape<P>): DurableProgress<P> {
  const { info } = ctx;
  if (!info.workflowExecution) throw new Error(`Activity ${info.activityId} has no workflow: no progress to keep`);
  const key: SendProgressKey = {
    workflowId: info.workflowExecution.workflowId,
    runId: info.workflowExecution.runId,
    activityId: info.activityId,
    fence: info.currentAttemptScheduledTimestampMs,
  };
  const named = `${key.workflowId} / activity ${key.activityId} (attempt ${info.attempt})`;
  const bounded = <T>(what: string, work: Promise<T>) =>
    withTimeout(work, PROGRESS_SILENCE_MS, `${what} of ${named}: Postgres did not answer in ${PROGRESS_SILENCE_MS} ms`);
  const stale = () =>
    new Error(
      `A later attempt of ${named} has claimed its progress, or the activity is over: this attempt sends nothing more`,
    );
  /** The page whose progress the row holds for this attempt, and how many of its ids. */
  let written: { page: number; ids: number } | undefined;
  /** Whether this attempt has written since its claim (its first write is always a fenced page write). */
  let fenced = false;
  return {
    async resume(db) {
      const beat = info.heartbeatDetails as P | undefined;
      const claim = await bounded('Claiming the per_key progress', claimSendProgress(db, key));
      if (claim.stale) throw stale();
      await bounded('Sweeping old per_key progress', sweepSendProgress(db));
      const { stored } = claim;
      if (stored === undefined) return beat;
      if (beat !== undefined) {
        const page = shape.page(beat);
        const ahead = page > stored.page || (page === stored.page && shape.sent(beat).length > stored.sent.length);
        if (ahead) return beat;
      }
      written = { page: stored.page, ids: stored.sent.length };
      return shape.join(stored.details, stored.sent, beat);
    },
    async write(db, details) {
      const page = shape.page(details);
      const sent = shape.sent(details);
      await bounded(
        'Writing the per_key progress',
        (async () => {
          // A page's first wave, and the attempt's first wave whatever its page (resumed from the row, it may have
          // nothing new to write): a fenced statement, so that an attempt claimed over since its resume sends nothing.
          if (written?.page !== page || !fenced) {
            if (!(await writeSendPage(db, key, page, shape.rest(details)))) throw stale();
            if (written?.page !== page) written = { page, ids: 0 };
            fenced = true;
          }
          if (sent.length > written.ids) {
            if (!(await addSentIds(db, key, page, sent.slice(written.ids)))) throw stale();
            written.ids = sent.length;
          }
        })(),
      );
    },
  };
}

/**
 * Where a sending activity resumes: under per_key ordering its DurableProgress (claimed) and what that resumes from;
 * otherwise no durable progress, and its heartbeat details.
 */
export async function resumeSender<P>(
  ctx: Context,
  ordering: ReplayOrdering | undefined,
  shape: ProgressShape<P>,
  db: Queryable,
): Promise<{ durable?: DurableProgress<P>; resumed?: P }> {
  if (ordering !== 'per_key') return { resumed: ctx.info.heartbeatDetails as P | undefined };
  const durable = durableProgress(ctx, shape);
  return { durable, resumed: await durable.resume(db) };
}

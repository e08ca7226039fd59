import type { Context } from '@temporalio/activity';
import type { Queryable } from '../repository/queryable';
import {
  addSentIds,
  claimSendProgress,
  sweepSendProgress,
  writeSendPage,
  type SendProgressKey,
} from '../repository/send-progress';
import { REFUSAL_KINDS, type RefusedIds, type ReplayOrdering } from '../journal/kinds';
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
   * Makes the progress durable before a wave is sent: the page and its progress, with the ids it refused, as a page
   * begins, then only the ids sent since. Rejects, and the wave is not sent, when Postgres refuses or is silent, or
   * the progress is no longer this attempt's (a later attempt claimed it, or the activity is over). Call resume first.
   */
  write(db: Queryable, details: P): Promise<void>;
}

/**
 * How a kind of progress is kept: the page it is in, the ids of that page sent and refused, and the rest. The ids
 * refused are decided as the page begins and kept with it, so that a retry does not decide again: on a worker of
 * another config (a higher REPLAY_MAX_HOPS) an event refused before a newer one of its key was sent would be sent
 * after it (test/unit/attack55-refusal-redecided-on-retry.test.ts).
 */
export interface ProgressShape<P> {
  page(progress: P): number;
  sent(progress: P): number[];
  refused(progress: P): RefusedIds;
  /** What is written besides the ids: nothing that may quote a payload (the row outlives erasures' redaction). */
  rest(progress: P): Record<string, unknown>;
  /** The progress from what was written, with what the heartbeat has that the row does not keep. */
  join(rest: Record<string, unknown>, ids: { sent: number[]; refused: RefusedIds }, beat: P | undefined): P;
}

/** A range or archive chunk's progress: its pages, the ids of its next page sent and refused; reasons from the beat. */
export const chunkShape = <P extends ChunkProgress>(): ProgressShape<P> => ({
  page: (progress) => progress.pages ?? 0,
  sent: (progress) => progress.pageSent ?? [],
  refused: (progress) => progress.pageRefused ?? {},
  rest: ({ pageSent: _sent, pageRefused: _refused, transformFailed: _reasons, ...rest }) => rest,
  join: (rest, { sent, refused }, beat) =>
    ({
      ...rest,
      ...(beat?.transformFailed ? { transformFailed: beat.transformFailed } : {}),
      ...(sent.length ? { pageSent: sent } : {}),
      ...withRefusedIds('pageRefused', refused),
    }) as P,
});

/** What chunkShape reads of a chunk's progress. */
export interface ChunkProgress {
  pages?: number;
  pageSent?: number[];
  /** Ids of the page refused, by kind (per_key: heartbeated and written with the ids sent). */
  pageRefused?: RefusedIds;
  transformFailed?: unknown[];
}

/**
 * `{ [key]: refused }` when some id was refused, else nothing: progress without refusals keeps its earlier shape (that
 * of workers before refusals were kept), whichever field holds them (`pageRefused` of a chunk, `refused` of a batch).
 */
export function withRefusedIds<K extends string>(
  key: K,
  refused: RefusedIds | undefined,
): Partial<Record<K, RefusedIds>> {
  return refusedIdsOf(refused).length > 0 ? ({ [key]: refused } as Partial<Record<K, RefusedIds>>) : {};
}

/** A batch page's progress: the ids sent, and refused. */
export const batchShape = {
  page: () => 0,
  sent: (progress) => progress.sent ?? [],
  refused: (progress) => progress.refused ?? {},
  rest: () => ({}),
  join: (_rest, { sent, refused }) => ({ sent, ...withRefusedIds('refused', refused) }),
} satisfies ProgressShape<{ sent?: number[]; refused?: RefusedIds }>;

/** Every id of `refused`, whatever its kind. */
const refusedIdsOf = (refused: RefusedIds | undefined) => REFUSAL_KINDS.flatMap((kind) => refused?.[kind] ?? []);

/** The ids of `refused` that are not in `known`, by kind. */
function refusedBeyond(refused: RefusedIds, known: ReadonlySet<number>): RefusedIds {
  const beyond: RefusedIds = {};
  for (const kind of REFUSAL_KINDS) {
    const ids = refused[kind]?.filter((id) => !known.has(id));
    if (ids?.length) beyond[kind] = ids;
  }
  return beyond;
}

/** Both sets of refused ids, by kind (an id in both once). */
function refusedUnion(a: RefusedIds, b: RefusedIds): RefusedIds {
  const union: RefusedIds = {};
  for (const kind of REFUSAL_KINDS) {
    const ids = [...new Set([...(a[kind] ?? []), ...(b[kind] ?? [])])];
    if (ids.length) union[kind] = ids;
  }
  return union;
}

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
  /** The page whose progress the row holds for this attempt, how many of its ids sent, and its ids refused. */
  let written: { page: number; ids: number; refused: Set<number> } | undefined;
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
        // On the row's page, the ids the row says were refused stay refused, whatever the beat says.
        if (ahead && page > stored.page) return beat;
        if (ahead) {
          const refused = refusedUnion(shape.refused(beat), stored.refused);
          return shape.join(shape.rest(beat), { sent: shape.sent(beat), refused }, beat);
        }
      }
      written = { page: stored.page, ids: stored.sent.length, refused: new Set(refusedIdsOf(stored.refused)) };
      return shape.join(stored.details, stored, beat);
    },
    async write(db, details) {
      const page = shape.page(details);
      const sent = shape.sent(details);
      await bounded(
        'Writing the per_key progress',
        (async () => {
          // The page's refusals, decided as it begins (or as this attempt resumed it), not yet written.
          const refused = refusedBeyond(shape.refused(details), written?.page === page ? written.refused : new Set());
          // A page's first wave, and the attempt's first wave whatever its page (resumed from the row, it may have
          // nothing new to write): a fenced statement, so that an attempt claimed over since its resume sends nothing.
          // It carries the refusals (a later wave has none new: a page's are decided before its first).
          if (written?.page !== page || !fenced || refusedIdsOf(refused).length > 0) {
            if (!(await writeSendPage(db, key, page, shape.rest(details), refused))) throw stale();
            if (written?.page !== page) written = { page, ids: 0, refused: new Set() };
            for (const id of refusedIdsOf(refused)) written.refused.add(id);
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

import { ApplicationFailure, Context } from '@temporalio/activity';
import {
  countRange,
  maxEventId,
  pinJournal,
  rangePage,
  rangeSample,
  type RangeCount,
  type RangeFilter,
  type RangeSampleRow,
} from '../repository/event-journal';
import type { ActivityDeps } from './deps';
import type { RefusedIds, ReplayOrdering } from '../journal/kinds';
import { type Lineage } from '../journal/lineage';
import { applyTransform, type ReplayTransform } from '../journal/transform';
import { replayRows } from '../repository/event-journal';
import { withErasuresChecked } from '../repository/erasure';
import { chunkShape, resumeSender } from './durable-progress';
import { publishChunkPage } from './ordered-publish';
import { ownTopicCheck, withRefusedTopics } from './own-topic';
import { keptFailures } from '../workflows/replay-options';
import { preparePage, type RefusedEvent } from './replay-messages';
import { countArchivedRange, newestArchivedId, type ArchivedSegment } from './archive-range';
import { prefetch } from './prefetch';
import { withOneSnapshot, type Pool } from '../shared/db';

/** Matching rows a dry run shows, the first in id order. */
export const DRY_RUN_SAMPLE_SIZE = 10;

/**
 * What a dry run reports: matching events in all (journal and archive), by topic and by tenant, the first few of them
 * (from the journal); and how many are archived and in which segments (absent from results of workflows that ran
 * before cold replay).
 */
export interface RangeCountSummary {
  matched: number;
  by_topic: Record<string, number>;
  by_tenant: Record<string, number>;
  archived?: number;
  archived_segments?: string[];
  sample?: PreviewRow[];
  /** The transform previewed on the sample (its id and patch). */
  transform?: ReplayTransform;
}

/**
 * A sample row of a dry run; with a transform, its payload as the replay would send it (before lineage), or why the
 * transform does not apply to it.
 */
export type PreviewRow = RangeSampleRow & { transformed?: Record<string, unknown>; transform_error?: string };

/** A range pinned for replay: the journal filter, the archived segments it reads, and how many rows in all. */
export interface PlannedRange {
  filter: RangeFilter;
  total: number;
  /** Segments read before the journal, in replay order (absent in plans recorded before cold replay). */
  segments?: string[];
  /** Segments read after the journal pass, because the journal still held some of their rows. */
  deferred?: string[];
  /** When the plan listed the archive (ISO 8601): segments archived since are looked at after the journal pass. */
  plannedAt?: string;
  archived?: number;
}

export type RangeSelection = Omit<RangeFilter, 'maxId'>;

export interface RangeChunkInput extends Lineage {
  filter: RangeFilter;
  /** The chunk starts after this id. */
  cursor: number;
  /** Rows per page. */
  limit: number;
  /** Most pages this call replays (default 1: one page per call, as under a rate limit). */
  maxPages?: number;
  /** No further page is started once this much time has passed since the attempt began. */
  budgetMs?: number;
  /** The request was scoped to one tenant: without a target, only events of the ingested topics are sent. */
  tenantScoped?: boolean;
  ordering?: ReplayOrdering;
}

/** What a chunk has done so far: heartbeated after every page, returned at the end. Counts are for this chunk. */
export interface RangeChunkResult {
  /** Id of the last row read: the next page starts after it. */
  cursor: number;
  read: number;
  published: number;
  failed: number;
  /** A short page was read: the range is finished. */
  done: boolean;
  pages: number;
  /** Events not sent because their own topic is not an allowed target, by topic (counted in `failed` too). */
  refusedTopics?: Record<string, number>;
  /** Events the transform could not apply to, with the reason (the first few; counted in `failed` too). */
  transformFailed?: RefusedEvent[];
  /** Heartbeated only, under per-key ordering: ids of the page after `cursor` already sent. */
  pageSent?: number[];
  /** Heartbeated only, under per-key ordering: ids of that page refused, by kind (not decided again by a retry). */
  pageRefused?: RefusedIds;
}

/** Range replay: plan (pin and count the range), dry-run counts, and a chunk of consecutive keyset pages per call. */
export function createRangeActivities({ pool, producer, metrics, config, lineageKey, archive }: ActivityDeps) {
  /**
   * The range's rows in the journal and in the archive, counted by topic and tenant, up to the newest id either holds:
   * the journal's `newest` is pinJournal for a plan, maxEventId for a dry run.
   */
  const countAll = async (selection: RangeSelection, newest: (db: Pool) => Promise<number>) => {
    // Up to the newest id either store holds: retention may have emptied the journal of all but newer rows, or of
    // every row, while the archive keeps ids above the journal's newest. A plan's pin waits for the appends under way,
    // so no row at or below it commits later: the count is what the replay sends (attack54). A dry run sends nothing
    // and counts the range as it stands (a row of a lower id may still commit), without the pin's lock, which holds
    // ingest up while it waits (attack62).
    const maxId = Math.max(await newest(pool), await newestArchivedId(archive));
    const filter = { ...selection, maxId };
    const ctx = Context.current();
    // The journal as one snapshot for both counts, the archive's "still journaled" checks included: a row maintenance
    // moves to the archive meanwhile is counted once, in the journal, its segment deferred (attack59).
    const { journal, archived } = await withOneSnapshot(pool, async (db) => ({
      journal: await countRange(db, filter),
      archived: await countArchivedRange(archive, db, filter, (details) => ctx.heartbeat(details)),
    }));
    // A payload filter is evaluated by Postgres on journal rows; archived rows are not filtered yet, so a range that
    // reaches into the archive with one is refused rather than replayed unfiltered or silently without them.
    if (filter.payloadFilter !== undefined && archived.segments.some((s) => s.rows > 0)) {
      throw ApplicationFailure.nonRetryable(
        'payload_filter applies to journal events only, and this window reaches archived events: narrow it to the journal',
        'InvalidRequest',
      );
    }
    return { filter, journal, archived };
  };
  return {
    /**
     * Pins the range to the journal as it is now (replays journaled meanwhile are never picked up) and to the archive
     * segments holding some of it, and counts it.
     */
    async planRange(selection: RangeSelection, ordering?: ReplayOrdering): Promise<PlannedRange> {
      const plannedAt = new Date().toISOString();
      const { filter, journal, archived } = await countAll(selection, pinJournal);
      const archivedRows = sum(archived.counts);
      const moving = archived.segments.filter((s) => s.journaled > 0).map((s) => s.segment);
      if (ordering === 'per_key') await refuseUnordered(filter, archived.segments);
      return {
        filter,
        total: sum(journal) + archivedRows,
        segments: archived.segments.filter((s) => s.journaled === 0).map((s) => s.segment),
        deferred: moving,
        plannedAt,
        archived: archivedRows,
      };
    },

    async countRangeEvents(
      selection: RangeSelection,
      transform?: ReplayTransform,
      ordering?: ReplayOrdering,
    ): Promise<RangeCountSummary> {
      const { filter, journal, archived } = await countAll(selection, maxEventId);
      if (ordering === 'per_key') await refuseUnordered(filter, archived.segments);
      const sample = await rangeSample(pool, filter, DRY_RUN_SAMPLE_SIZE);
      const summary: RangeCountSummary = {
        matched: 0,
        by_topic: {},
        by_tenant: {},
        sample: transform ? await preview(sample, transform) : sample,
        ...(transform ? { transform } : {}),
      };
      for (const { topic, tenant_id, events } of [...journal, ...archived.counts]) {
        summary.matched += events;
        summary.by_topic[topic] = (summary.by_topic[topic] ?? 0) + events;
        summary.by_tenant[tenant_id] = (summary.by_tenant[tenant_id] ?? 0) + events;
      }
      const segments = archived.segments.filter((s) => s.rows > 0).map((s) => s.segment);
      return { ...summary, archived: sum(archived.counts), archived_segments: segments };
    },

    /**
     * Replays consecutive keyset pages after the cursor, each read, sent in one producer call and heartbeated, until
     * a short page, `maxPages` pages or `budgetMs`; the next page is read while the current one is being sent. A
     * cancellation (delivered with a heartbeat) stops it between pages. A retried attempt resumes from the last
     * heartbeat the server recorded: pages heartbeated before are not resent, later ones may be (the journal's
     * replay-once index keeps one copy). Named for its first form, one page per call, so that histories of runs
     * started before chunks still replay.
     */
    async replayRangePage(input: RangeChunkInput): Promise<RangeChunkResult> {
      const ctx = Context.current();
      const maxPages = input.maxPages ?? 1;
      const deadline = Date.now() + (input.budgetMs ?? Infinity);
      const { durable, resumed } = await resumeSender(ctx, input.ordering, chunkShape<RangeChunkResult>(), pool);
      // Details heartbeated by a one-page attempt of an older worker carry no page count.
      let result: RangeChunkResult = resumed
        ? { ...resumed, pages: resumed.pages ?? 1 }
        : { cursor: input.cursor, read: 0, published: 0, failed: 0, done: false, pages: 0 };
      if (result.done || result.pages >= maxPages) return result;
      ctx.cancellationSignal.throwIfAborted();

      const ownTopic = ownTopicCheck(
        config,
        { ...input, tenantScoped: input.tenantScoped ?? false },
        result.refusedTopics,
      );
      let next = prefetch(rangePage(pool, input.filter, result.cursor, input.limit));
      for (;;) {
        const rows = await next;
        const done = rows.length < input.limit;
        const last = done || result.pages + 1 >= maxPages || Date.now() >= deadline;
        const cursor = rows.length ? rows[rows.length - 1].id : result.cursor;
        if (!last) next = prefetch(rangePage(pool, input.filter, cursor, input.limit));
        const before = result;
        // Read before this page's turn (prefetched): checked against erased_events and sent under the erasures'
        // barrier, so that an erasure deleting rows of it meanwhile does not complete before the send has ended.
        const page = await withErasuresChecked(
          pool,
          rows.map((row) => row.id),
          producer,
          async (erased, keep, db) => {
            const out = preparePage(
              erased.size ? rows.filter((row) => !erased.has(row.id)) : rows,
              input,
              lineageKey,
              config.replay.maxHops,
              ownTopic,
              { sent: before.pageSent, refused: before.pageRefused },
            );
            await publishChunkPage(producer, out.outgoing, input, before, ctx, {
              refused: out.refusedIds,
              keep,
              durable: durable && { progress: durable, db },
            });
            return out;
          },
        );
        metrics.replayPublished.inc({ kind: 'range' }, page.outgoing.length);
        const transformFailed = keptFailures(before.transformFailed, page.transformFailed);
        result = {
          cursor,
          read: before.read + rows.length,
          published: before.published + page.outgoing.length,
          failed: before.failed + page.refused.length + page.transformFailed.length,
          done,
          pages: before.pages + 1,
          ...withRefusedTopics(ownTopic.refusedTopics()),
          ...(transformFailed ? { transformFailed } : {}),
        };
        ctx.heartbeat(result);
        if (last) return result;
        ctx.cancellationSignal.throwIfAborted(); // the reason is a CancelledFailure: the attempt ends as cancelled
      }
    },
  };

  /** InvalidRequest when the range's archive pass cannot keep per-key order (perKeyProblem). */
  async function refuseUnordered(filter: RangeFilter, segments: ArchivedSegment[]): Promise<void> {
    const [first] = await rangeSample(pool, filter, 1);
    const moving = segments.filter((s) => s.journaled > 0).map((s) => s.segment);
    const problem = perKeyProblem(segments, moving, first?.id);
    if (problem) throw ApplicationFailure.nonRetryable(`ordering per_key: ${problem}`, 'InvalidRequest');
  }

  /** The sample with each payload as the transform makes it (from the text a replay sends), or the reason it fails. */
  async function preview(sample: RangeSampleRow[], transform: ReplayTransform): Promise<PreviewRow[]> {
    const texts = new Map(
      (
        await replayRows(
          pool,
          sample.map((row) => row.id),
        )
      ).map((r) => [r.id, r.payload_text]),
    );
    return sample.map((row) => {
      const text = texts.get(row.id);
      if (text === undefined) return { ...row, transform_error: 'no longer in the journal' };
      const outcome = applyTransform(text, transform);
      return outcome.ok
        ? { ...row, transformed: JSON.parse(outcome.text) as Record<string, unknown> }
        : { ...row, transform_error: outcome.reason };
    });
  }
}

/**
 * Why the archive pass of a range cannot keep journal order, or undefined when it can: it sends segment after segment,
 * then the journal, so each segment read must hold only ids below the next one's and the journal's first. Segments
 * being archived (rows in both stores) would send some rows after the journal pass; segments that interleave (a
 * topic's own retention) would send a later row of one before an earlier row of the other.
 */
function perKeyProblem(segments: ArchivedSegment[], moving: string[], firstJournalId: number | undefined) {
  if (moving.length > 0) {
    return `archiving of ${moving.join(', ')} is under way (rows in both the journal and the archive); replay once maintenance has finished`;
  }
  const read = segments.filter((s) => s.rows > 0 && s.ids);
  for (const [i, segment] of read.entries()) {
    const next = read[i + 1]?.ids!.min ?? firstJournalId ?? Infinity;
    if (segment.ids!.max >= next) {
      return `archived segment ${segment.segment} holds ids up to ${segment.ids!.max}, past ${next} which follows it: narrow the range (by topic or time) so that its archived and journaled events do not interleave`;
    }
  }
  return undefined;
}

const sum = (counts: RangeCount[]) => counts.reduce((total, c) => total + c.events, 0);

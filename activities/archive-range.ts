import { ApplicationFailure, Context } from '@temporalio/activity';
import {
  findManifest,
  listSegments,
  readSegment,
  rowMatcher,
  segmentMayMatch,
  type ArchiveRow,
  type ArchiveStore,
  type RowFilter,
  type SegmentManifest,
} from '../archive';
import type { RefusedIds, ReplayOrdering } from '../journal/kinds';
import type { Lineage } from '../journal/lineage';
import {
  archivedReplayRows,
  journaledIds,
  type RangeCount,
  type RangeFilter,
  type ReplayRow,
} from '../repository/event-journal';
import { withErasuresChecked } from '../repository/erasure';
import type { Queryable } from '../repository/queryable';
import type { ActivityDeps } from './deps';
import { ownTopicCheck, withRefusedTopics } from './own-topic';
import { chunkShape, resumeSender } from './durable-progress';
import { publishChunkPage } from './ordered-publish';
import { prefetch } from './prefetch';
import { keptFailures } from '../workflows/replay-options';
import { preparePage, type RefusedEvent } from './replay-messages';

/** Rows read between heartbeats while a segment is scanned past rows that do not match (or were already sent). */
const HEARTBEAT_EVERY_ROWS = 10_000;

/** Archived rows looked up in the journal at once while a range's archive is counted. */
const COUNT_BATCH = 1_000;

/** Segments archived this long before a plan are looked at again after the journal pass: clocks of workers differ. */
const CLOCK_SKEW_MS = 10 * 60_000;

/** The archive's rows a range selects: the conditions of the journal's range query (repository/event-journal.ts). */
export function archiveRowFilter(filter: RangeFilter): RowFilter {
  return {
    receivedFrom: filter.start,
    receivedBefore: filter.end,
    idAtMost: filter.maxId,
    tenantId: filter.tenantId,
    topic: filter.topic,
    originalsOnly: !filter.includeReplays,
  };
}

/** The largest id any archived segment holds (0 when none). */
export async function newestArchivedId(archive: ArchiveStore): Promise<number> {
  return (await listSegments(archive)).reduce((max, m) => Math.max(max, m.id?.max ?? 0), 0);
}

/** A segment holding rows of a range: how many the archive alone holds, and how many the journal holds too. */
export interface ArchivedSegment {
  segment: string;
  rows: number;
  journaled: number;
  /** The segment's smallest and largest id (its manifest's, every row of it, matching or not). */
  ids?: { min: number; max: number };
}

/** What a range holds in the archive: its segments (oldest first) and the archive-only rows by topic and tenant. */
export interface ArchivedRange {
  segments: ArchivedSegment[];
  counts: RangeCount[];
}

/**
 * Counts a range's archived rows by topic and tenant, reading every segment whose manifest may hold some (streamed),
 * or only those `include` accepts. A row the journal still holds (an archiving that stopped before its drop) is the
 * journal's: counted apart, per segment. Segments come oldest first: by their smallest id, then by name.
 */
export async function countArchivedRange(
  archive: ArchiveStore,
  db: Queryable,
  filter: RangeFilter,
  heartbeat: (details: unknown) => void,
  include: (manifest: SegmentManifest) => boolean = () => true,
): Promise<ArchivedRange> {
  const rowFilter = archiveRowFilter(filter);
  const manifests = (await listSegments(archive))
    .filter((m) => include(m) && segmentMayMatch(m, rowFilter))
    .sort((a, b) => a.id!.min - b.id!.min || (a.segment < b.segment ? -1 : 1));
  const tally = new Map<string, RangeCount>();
  const segments: ArchivedSegment[] = [];
  for (const manifest of manifests) {
    const found: ArchivedSegment = { segment: manifest.segment, rows: 0, journaled: 0, ids: manifest.id ?? undefined };
    let batch: ArchiveRow[] = [];
    const flush = async () => {
      const journaled = await journaledIds(db, batch);
      found.journaled += journaled.size;
      for (const row of batch) {
        if (journaled.has(row.id)) continue;
        found.rows++;
        const key = JSON.stringify([row.topic, row.tenant_id]);
        const count = tally.get(key) ?? { topic: row.topic, tenant_id: row.tenant_id, events: 0 };
        count.events++;
        tally.set(key, count);
      }
      batch = [];
      heartbeat(found);
    };
    for await (const row of readArchived(archive, manifest, rowMatcher(rowFilter), heartbeat)) {
      batch.push(row);
      if (batch.length >= COUNT_BATCH) await flush();
    }
    await flush();
    if (found.rows + found.journaled > 0) segments.push(found);
  }
  const counts = [...tally.values()].sort((a, b) =>
    a.topic === b.topic ? (a.tenant_id < b.tenant_id ? -1 : 1) : a.topic < b.topic ? -1 : 1,
  );
  return { segments, counts };
}

/**
 * Where an archive chunk is: the segment (an index into the range's pinned list) and the last id replayed from it.
 * A rewrite (erasure) keeps the ids of the rows it keeps, so the position stays valid across generations; the
 * generation is kept to tell, in logs, that the segment changed under a running replay.
 */
export interface ArchivePosition {
  index: number;
  lastId: number;
  generation: number;
}

export interface ArchiveChunkInput extends Lineage {
  filter: RangeFilter;
  /** The range's segments, pinned when it was planned. */
  segments: string[];
  position: ArchivePosition;
  /** Rows per page. */
  limit: number;
  maxPages: number;
  /** No further page is started once this much time has passed since the attempt began. */
  budgetMs: number;
  /** Pages are spaced so that no more than this many events go out per second (the call's own pacing). */
  maxEventsPerSecond?: number;
  tenantScoped?: boolean;
  ordering?: ReplayOrdering;
}

/** An archive chunk's progress: heartbeated after every page, returned at the end. Counts are for this chunk. */
export interface ArchiveChunkResult {
  position: ArchivePosition;
  read: number;
  published: number;
  failed: number;
  /**
   * Archived rows the journal still holds (the journal pass sends them, not this one), and rows an erasure dropped
   * from a segment after this pass opened it.
   */
  skipped: number;
  pages: number;
  /** Every pinned segment has been read through: the archive pass is over. */
  done: boolean;
  refusedTopics?: Record<string, number>;
  /** Events the transform could not apply to, with the reason (the first few; counted in `failed` too). */
  transformFailed?: RefusedEvent[];
  /** Heartbeated only, under per-key ordering: ids of the page after `position` already sent. */
  pageSent?: number[];
  /** Heartbeated only, under per-key ordering: ids of that page refused, by kind (not decided again by a retry). */
  pageRefused?: RefusedIds;
}

/** Cold replay: the part of a range replay that reads archived segments (docs/lifecycle.md, "Cold replay"). */
export function createArchiveRangeActivities({
  pool,
  producer,
  metrics,
  config,
  lineageKey,
  archive,
  log,
}: ActivityDeps) {
  return {
    /**
     * The segments a range replay reads after its journal pass: those it deferred when it was planned (the journal
     * held some of their rows), and those archived since (maintenance moved rows of the range out of the journal while
     * it ran), when they hold rows the journal no longer does. A row moved after the journal pass had sent it is sent
     * again from here: never lost, possibly twice (docs/lifecycle.md, "Cold replay"). With a payload filter, late rows
     * fail the replay (InvalidRequest), as archived rows do when it is planned.
     */
    async planLateArchive(input: {
      filter: RangeFilter;
      read: string[];
      deferred: string[];
      plannedAt: string;
    }): Promise<string[]> {
      const ctx = Context.current();
      const read = new Set(input.read);
      const deferred = new Set(input.deferred);
      const since = new Date(Date.parse(input.plannedAt) - CLOCK_SKEW_MS).toISOString();
      const late = await countArchivedRange(
        archive,
        pool,
        input.filter,
        (details) => ctx.heartbeat(details),
        (m) => deferred.has(m.segment) || (!read.has(m.segment) && m.created_at >= since),
      );
      const segments = late.segments.filter((s) => s.rows > 0).map((s) => s.segment);
      // Archived rows are not filtered (the payload filter is Postgres', on the journal): sent from here, every one
      // would go out, matching or not. The replay fails instead, naming them.
      if (segments.length > 0 && input.filter.payloadFilter !== undefined) {
        throw ApplicationFailure.nonRetryable(
          `payload_filter applies to journal events only, and rows of this range were archived while it was replayed (${segments.join(', ')}) and were not sent; replay the range again`,
          'InvalidRequest',
        );
      }
      return segments;
    },

    /**
     * Replays the next pages of the range's archived rows, segment after segment, each page sent in one producer call
     * and heartbeated with its position, until the last segment ends, `maxPages` pages or `budgetMs`. Under a rate the
     * pages of one call are spaced by the rate here (the workflow's timer covers the last one). A retried attempt
     * resumes from its last heartbeat; a new call reopens its segment and reads past the rows up to the position.
     * An unreadable segment (ArchiveVerifyError, ArchiveFormatError) fails the replay without retry.
     */
    async replayArchivePage(input: ArchiveChunkInput): Promise<ArchiveChunkResult> {
      const ctx = Context.current();
      const began = Date.now();
      const deadline = began + input.budgetMs;
      const { durable, resumed } = await resumeSender(ctx, input.ordering, chunkShape<ArchiveChunkResult>(), pool);
      let result: ArchiveChunkResult = resumed ?? {
        position: input.position,
        read: 0,
        published: 0,
        failed: 0,
        skipped: 0,
        pages: 0,
        done: false,
      };
      if (result.done || result.pages >= input.maxPages) return result;
      ctx.cancellationSignal.throwIfAborted();
      const ownTopic = ownTopicCheck(
        config,
        { ...input, tenantScoped: input.tenantScoped ?? false },
        result.refusedTopics,
      );
      const matches = rowMatcher(archiveRowFilter(input.filter));

      // What was last heartbeated (the resumed details until this attempt heartbeats).
      let beaten: unknown = result;
      const heartbeat = (details: unknown) => {
        beaten = details;
        ctx.heartbeat(details);
      };

      let readNow = 0; // by this attempt: what its pacing counts
      while (result.position.index < input.segments.length) {
        const { index, lastId } = result.position;
        const name = input.segments[index];
        const manifest = await findManifest(archive, name);
        if (!manifest) {
          // Restored into the journal and removed from the archive: the journal pass has its rows.
          log.warn({ segment: name }, 'Archived segment gone during a range replay; skipped');
          result = { ...result, position: { index: index + 1, lastId: 0, generation: 0 } };
          continue;
        }
        if (result.position.generation && manifest.generation !== result.position.generation) {
          log.info({ segment: name, generation: manifest.generation }, 'Archived segment rewritten during a replay');
        }
        // The reads' beat repeats the details last heartbeated: a per_key page's pageSent included (the chunk's
        // progress alone would have its retry send the page's sent waves again, an older event after a newer one).
        const rows = readArchived(
          archive,
          manifest,
          (row) => row.id > lastId && matches(row),
          () => ctx.heartbeat(beaten),
        );
        const next = () => prefetch(nextPage(pool, rows, input.limit));
        let pending = next();
        try {
          for (;;) {
            const taken = await pending;
            readNow += taken.read;
            const ended = taken.read < input.limit;
            const stop = result.pages + 1 >= input.maxPages || Date.now() >= deadline;
            if (!ended && !stop) pending = next();
            const before = result;
            // The erased check and the send under the erasures' barrier: an erasure that records ids of this page
            // after the check does not complete before the send has ended.
            const { page, prepared } = await withErasuresChecked(
              pool,
              taken.rows.map((row) => row.id),
              producer,
              async (erased, keep, db) => {
                const kept = withoutErased(taken, erased);
                const out = preparePage(kept.rows, input, lineageKey, config.replay.maxHops, ownTopic, {
                  sent: before.pageSent,
                  refused: before.pageRefused,
                });
                await publishChunkPage(producer, out.outgoing, input, before, ctx, {
                  refused: out.refusedIds,
                  keep,
                  heartbeat,
                  durable: durable && { progress: durable, db },
                });
                return { page: kept, prepared: out };
              },
            );
            metrics.replayPublished.inc({ kind: 'range' }, prepared.outgoing.length);
            const transformFailed = keptFailures(before.transformFailed, prepared.transformFailed);
            const position = ended
              ? { index: index + 1, lastId: 0, generation: 0 }
              : { index, lastId: page.lastId ?? result.position.lastId, generation: manifest.generation };
            result = {
              position,
              read: before.read + page.read,
              published: before.published + prepared.outgoing.length,
              failed: before.failed + prepared.refused.length + prepared.transformFailed.length,
              skipped: before.skipped + page.skipped,
              pages: before.pages + 1,
              done: ended && index + 1 >= input.segments.length,
              ...withRefusedTopics(ownTopic.refusedTopics()),
              ...(transformFailed ? { transformFailed } : {}),
            };
            heartbeat(result);
            if (stop || result.done) return result;
            ctx.cancellationSignal.throwIfAborted();
            if (input.maxEventsPerSecond) {
              const due = began + (readNow / input.maxEventsPerSecond) * 1000 - Date.now();
              if (due > 0) await ctx.sleep(due);
            }
            if (ended) break;
          }
        } finally {
          await rows.return(undefined);
        }
      }
      return { ...result, done: true };
    },
  };
}

/** A page of archived rows, ready to send: the ones the journal no longer holds, as replay rows. */
interface ArchivePage {
  rows: ReplayRow[];
  /** Rows taken from the segment (fewer than asked: the segment has no more). */
  read: number;
  /** Of those, the ones the journal still holds (and, once withoutErased, those erased). */
  skipped: number;
  lastId?: number;
}

/**
 * The page without the rows an erasure has dropped from the archive since the segment was opened (the generation being
 * read still holds them): looked up just before the page is sent, under the erasures' barrier (withErasuresChecked),
 * and counted as skipped.
 */
function withoutErased(page: ArchivePage, erased: Map<number, string>): ArchivePage {
  if (erased.size === 0) return page;
  const rows = page.rows.filter((row) => !erased.has(row.id));
  return { ...page, rows, skipped: page.skipped + page.rows.length - rows.length };
}

async function nextPage(db: Queryable, rows: AsyncGenerator<ArchiveRow>, limit: number): Promise<ArchivePage> {
  const taken: ArchiveRow[] = [];
  while (taken.length < limit) {
    const next = await rows.next();
    if (next.done) break;
    taken.push(next.value);
  }
  const journaled = await journaledIds(db, taken);
  const fresh = taken.filter((row) => !journaled.has(row.id));
  return {
    rows: await archivedReplayRows(db, fresh),
    read: taken.length,
    skipped: taken.length - fresh.length,
    lastId: taken.at(-1)?.id,
  };
}

/**
 * A segment's matching rows, streamed and verified at the end. `beat` is called every HEARTBEAT_EVERY_ROWS rows read,
 * matching or not, so that a long run of rows passed over does not look like a stalled activity. A segment that
 * cannot be read as its manifest says will not read better on a retry: non-retryable.
 */
async function* readArchived(
  archive: ArchiveStore,
  manifest: SegmentManifest,
  matches: (row: ArchiveRow) => boolean,
  beat: (details: unknown) => void,
): AsyncGenerator<ArchiveRow> {
  let scanned = 0;
  const filter = (row: ArchiveRow) => {
    if (++scanned % HEARTBEAT_EVERY_ROWS === 0) beat(undefined);
    return matches(row);
  };
  try {
    yield* readSegment(archive, manifest, { filter });
  } catch (err) {
    const { name, message } = err as Error;
    if (name === 'ArchiveVerifyError' || name === 'ArchiveFormatError')
      throw ApplicationFailure.nonRetryable(message, name);
    throw err;
  }
}

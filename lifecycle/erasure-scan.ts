import { listSegments, readSegment, type ArchiveRow, type ArchiveStore } from '../archive';
import { archiveRowMatches, countMatches, maxIdOf, type ErasureTable } from '../repository/erasure-match';
import type { Queryable } from '../repository/queryable';
import { archiveCandidate, type ErasureTarget } from './erasure-target';

/** Ids per statement of a count; deletes use smaller windows (they write). */
export const COUNT_WINDOW = 50_000;

/**
 * Id windows (from, to] covering the table from afterId to its end, one statement's worth each, so that no statement
 * of a pass over a large journal runs long. The end is read again when the windows reach it: rows journaled during
 * the pass are covered too.
 */
export async function* idWindows(
  db: Queryable,
  table: ErasureTable,
  afterId: number,
  size: number,
): AsyncGenerator<[number, number]> {
  let from = afterId;
  for (let end = await maxIdOf(db, table); from < end; end = await maxIdOf(db, table)) {
    while (from < end) {
      const to = Math.min(from + size, end);
      yield [from, to];
      from = to;
    }
  }
}

/** Decides whether an archived row is the target's: a cheap test on the text first, Postgres for the few that pass. */
export function archiveRowMatcher(db: Queryable, target: ErasureTarget): (row: ArchiveRow) => Promise<boolean> {
  const candidate = archiveCandidate(target);
  if (target.kind === 'tenant') return async (row) => candidate(row);
  return async (row) => candidate(row) && (await archiveRowMatches(db, target, row));
}

/** What an erasure of the target would delete, per store (the dry run's answer). */
export interface ErasureMatchCounts {
  journal: { rows: number };
  dlq: { rows: number };
  archive: { segments: number; rows: number; segments_read: number };
}

/**
 * Counts the target's rows in the journal, the DLQ and every archived segment (each is read through, decompressed:
 * the manifest cannot tell which rows a subject has). `progress` is called between steps (an activity heartbeats).
 */
export async function countErasureMatches(
  db: Queryable,
  archive: ArchiveStore,
  target: ErasureTarget,
  progress: () => void = () => undefined,
): Promise<ErasureMatchCounts> {
  const counts: ErasureMatchCounts = {
    journal: { rows: 0 },
    dlq: { rows: 0 },
    archive: { segments: 0, rows: 0, segments_read: 0 },
  };
  for (const [table, store] of [
    ['event_journal', counts.journal],
    ['event_dlq', counts.dlq],
  ] as const) {
    for await (const [from, to] of idWindows(db, table, 0, COUNT_WINDOW)) {
      store.rows += await countMatches(db, table, target, from, to);
      progress();
    }
  }
  const matches = archiveRowMatcher(db, target);
  for (const manifest of await listSegments(archive)) {
    let rows = 0;
    for await (const row of readSegment(archive, manifest)) {
      if (await matches(row)) rows++;
    }
    counts.archive.segments_read++;
    if (rows > 0) counts.archive.segments++;
    counts.archive.rows += rows;
    progress();
  }
  return counts;
}

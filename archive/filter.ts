import type { SegmentManifest } from './manifest';
import type { ArchiveRow } from './row';

/**
 * Which rows a reader yields, with the range replay's semantics: every given condition must hold. Times are ISO 8601;
 * received_at bounds are [receivedFrom, receivedBefore), id bounds (idAfter, idAtMost], the replay's keyset cursor
 * and its pinned maximum.
 */
export interface RowFilter {
  tenantId?: string;
  topic?: string;
  receivedFrom?: string;
  receivedBefore?: string;
  idAfter?: number;
  idAtMost?: number;
  /** Only originals (replay_count = 0), as a range replay without include_replays. */
  originalsOnly?: boolean;
}

/** Any condition on a row, for what RowFilter does not say. */
export type RowPredicate = (row: ArchiveRow) => boolean;

const MICROS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;

/**
 * A time as a row's received_at is written (UTC, six fraction digits), so that rows compare by text. Anything Date
 * parses is accepted; sub-millisecond digits survive only in that exact form.
 */
export function canonicalTime(time: string): string {
  if (MICROS.test(time)) return time;
  const date = new Date(time);
  if (Number.isNaN(date.getTime())) throw new RangeError(`Not a time: "${time}"`);
  return date.toISOString().replace('Z', '000Z');
}

/** The filter as one predicate, its times made comparable once instead of per row. */
export function rowMatcher(filter: RowFilter | RowPredicate | undefined): RowPredicate {
  if (filter === undefined) return () => true;
  if (typeof filter === 'function') return filter;
  const { tenantId, topic, idAfter, idAtMost, originalsOnly } = filter;
  const from = filter.receivedFrom === undefined ? undefined : canonicalTime(filter.receivedFrom);
  const before = filter.receivedBefore === undefined ? undefined : canonicalTime(filter.receivedBefore);
  return (row) =>
    (tenantId === undefined || row.tenant_id === tenantId) &&
    (topic === undefined || row.topic === topic) &&
    (from === undefined || row.received_at >= from) &&
    (before === undefined || row.received_at < before) &&
    (idAfter === undefined || row.id > idAfter) &&
    (idAtMost === undefined || row.id <= idAtMost) &&
    (!originalsOnly || row.replay_count === 0);
}

/** False when the manifest's id and time ranges show that no row of the segment can match: skip reading it. */
export function segmentMayMatch(manifest: SegmentManifest, filter: RowFilter): boolean {
  if (!manifest.id || !manifest.received_at) return false;
  if (filter.idAfter !== undefined && manifest.id.max <= filter.idAfter) return false;
  if (filter.idAtMost !== undefined && manifest.id.min > filter.idAtMost) return false;
  if (filter.receivedFrom !== undefined && manifest.received_at.max < canonicalTime(filter.receivedFrom)) return false;
  if (filter.receivedBefore !== undefined && manifest.received_at.min >= canonicalTime(filter.receivedBefore)) {
    return false;
  }
  return true;
}

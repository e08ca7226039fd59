import type { PoolClient } from 'pg';
import { copyArchiveRows } from '../repository/journal-archive';
import type { SegmentManifest } from './manifest';
import { readSegment } from './read-segment';
import type { ArchiveStore } from './store';

/**
 * Copies a segment's rows back into a table with the journal's columns (an empty partition re-created for its bounds,
 * or a scratch table), streamed, inside the caller's transaction. The file is verified as it is read: a damaged one
 * fails the COPY, so the caller's rollback leaves nothing half-restored. Returns the rows restored.
 */
export async function restoreSegment(
  store: ArchiveStore,
  segment: string | SegmentManifest,
  client: PoolClient,
  table: string,
): Promise<number> {
  return copyArchiveRows(client, table, readSegment(store, segment, { verify: true }));
}

import type { PendingWrite } from '../archive/pending-writes';
import type { Queryable } from './queryable';

/**
 * archive_pending_writes (sql/019): the archive rewrites' new files that no manifest may name yet, recorded before
 * each is written, so that one a failed rewrite left behind is found and deleted by a later archive pass
 * (archive/pending-writes.ts settlePendingWrite), whatever stopped the rewrite, a store outage or the process's end.
 */

/** Records a rewrite's file before it is written. */
export async function recordPendingArchiveWrite(db: Queryable, write: PendingWrite): Promise<void> {
  await db.query(
    `INSERT INTO archive_pending_writes (object_key, segment, compared_version) VALUES ($1, $2, $3)
     ON CONFLICT (object_key) DO NOTHING`,
    [write.key, write.segment, write.version],
  );
}

/** Forgets a file once it is settled: named by the manifest in force, or deleted. */
export async function forgetPendingArchiveWrite(db: Queryable, key: string): Promise<void> {
  await db.query('DELETE FROM archive_pending_writes WHERE object_key = $1', [key]);
}

/** The files still pending, oldest first. */
export async function listPendingArchiveWrites(db: Queryable): Promise<PendingWrite[]> {
  const { rows } = await db.query<{ object_key: string; segment: string; compared_version: string }>(
    'SELECT object_key, segment, compared_version FROM archive_pending_writes ORDER BY recorded_at, object_key',
  );
  return rows.map((r) => ({ key: r.object_key, segment: r.segment, version: r.compared_version }));
}

import type { ArchiveStore, SegmentManifest } from '../../archive';
import { writeSegment } from '../../archive';
import { journalArchiveRows } from '../../repository/journal-archive';
import { withTransaction, type Pool } from '../../shared/db';

/**
 * (The benchmarks' and the tests' way to put part of a journal in the archive without running maintenance.)
 * Archives the journal rows received in [from, before) as one segment the way maintenance does (one snapshot for
 * the count and the rows, the segment verified before its manifest), then deletes them from the journal — unless
 * `keep`, the state a crash between the archive and the drop leaves behind.
 */
export async function archiveWindow(
  pool: Pool,
  store: ArchiveStore,
  window: { segment: string; from: string; before: string; keep?: boolean },
): Promise<SegmentManifest> {
  const { segment, from, before } = window;
  return withTransaction(pool, async (client) => {
    await client.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ');
    const { rows } = await client.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM event_journal WHERE received_at >= $1 AND received_at < $2',
      [from, before],
    );
    const manifest = await writeSegment(store, {
      segment,
      table: 'event_journal',
      bounds: { from, to: before },
      rows: journalArchiveRows(client, { table: 'event_journal', receivedFrom: from, receivedBefore: before }),
      expectedRows: rows[0].n,
    });
    if (!window.keep) {
      await client.query('DELETE FROM event_journal WHERE received_at >= $1 AND received_at < $2 AND id <= $3', [
        from,
        before,
        manifest.id?.max ?? 0,
      ]);
    }
    return manifest;
  });
}

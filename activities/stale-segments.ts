import { deleteSegment, listSegments, readSegment, type SegmentManifest } from '../archive';
import { journaledIds } from '../repository/event-journal';
import { holdPartitionForWithdrawal } from '../repository/journal-partitions';
import { appendLifecycleAction } from '../repository/lifecycle-audit';
import { withTransaction } from '../shared/db';
import type { ActivityDeps } from './deps';

/** Archived rows looked up in the journal at once. */
const BATCH = 1000;

/** Whether the journal still holds every row of the segment (read through, in batches; stops at the first missing). */
async function stillJournaled(
  { pool, archive }: Pick<ActivityDeps, 'pool' | 'archive'>,
  manifest: SegmentManifest,
): Promise<boolean> {
  let batch: Array<{ id: number; received_at: string }> = [];
  const allThere = async () => {
    const found = await journaledIds(pool, batch);
    const complete = batch.every((row) => found.has(row.id));
    batch = [];
    return complete;
  };
  for await (const row of readSegment(archive, manifest)) {
    batch.push(row);
    if (batch.length >= BATCH && !(await allThere())) return false;
  }
  return allThere();
}

/**
 * Withdraws the segments of a partition that an earlier step archived and then did not remove (the policy changed
 * between the two, such as a hold; a run stopped or crossed midnight): the journal still holds every row they hold.
 * Left in place, their rows would be archived a second time by the partition's next step (a cold replay would send
 * them twice) and a later drop of the partition would find a segment that no longer matches it. The segment named
 * `keep` (the step's own, which a retried step reuses) is left. Each withdrawal is checked again and done under a
 * lock that a removal of the partition's rows waits for, and is recorded in the run's audit.
 */
export async function withdrawStaleSegments(
  deps: Pick<ActivityDeps, 'pool' | 'archive' | 'log'>,
  workflowId: string,
  partition: string,
  keep: string,
): Promise<string[]> {
  const { pool, archive, log } = deps;
  const withdrawn: string[] = [];
  for (const manifest of await listSegments(archive)) {
    if (manifest.table !== partition || manifest.segment === keep) continue;
    if (!(await stillJournaled(deps, manifest))) continue;
    const done = await withTransaction(pool, async (client) => {
      await holdPartitionForWithdrawal(client, partition);
      if (!(await stillJournaled(deps, manifest))) return false;
      await deleteSegment(archive, manifest.segment);
      await appendLifecycleAction(client, workflowId, {
        action: 'segment_withdrawn',
        segment: manifest.segment,
        partition,
        rows: manifest.rows,
      });
      return true;
    });
    if (done) {
      withdrawn.push(manifest.segment);
      log.info(
        { segment: manifest.segment, rows: manifest.rows },
        'Archived segment withdrawn: its rows are journaled',
      );
    }
  }
  return withdrawn;
}

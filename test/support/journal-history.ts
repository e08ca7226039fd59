import { listJournalPartitions } from '../../repository/journal-partitions';
import type { Pool } from '../../shared/db';

/**
 * Makes room for history in a fresh journal: the conversion's partition (from MINVALUE) is shrunk to end at `end`,
 * so that partitions can be created from there. Returns where the first partition made by maintenance starts, the
 * end of that room.
 */
export async function shrinkConversionPartition(pool: Pool, end: Date): Promise<Date> {
  const partitions = await listJournalPartitions(pool);
  const before = partitions.find((p) => p.from === null)!;
  const first = partitions.find((p) => p.from !== null && !p.isDefault)!.from!;
  await pool.query(`ALTER TABLE event_journal DETACH PARTITION ${before.name}`);
  await pool.query(
    `ALTER TABLE event_journal ATTACH PARTITION ${before.name} FOR VALUES FROM (MINVALUE) TO ('${end.toISOString()}')`,
  );
  return first;
}

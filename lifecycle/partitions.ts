import { withTransaction, type Pool } from '../shared/db';
import type { PartitionInterval } from '../shared/config';
import {
  createDefaultPartition,
  createJournalPartition,
  listJournalPartitions,
  type JournalPartition,
} from '../repository/journal-partitions';
import { nextPeriod, partitionName, periodStart } from './periods';

export interface CreatedPartition {
  name: string;
  from: string;
  to: string;
  /** Rows moved in from the default partition (strays adopted). */
  adopted: number;
}

/**
 * Makes sure partitions exist from the newest one (or the current period) up to `ahead` periods past now, plus the
 * default partition. Each partition is created in its own short transaction, adopting its rows from the default
 * partition. Idempotent; safe to run from several processes (a partition created meanwhile is skipped).
 */
export async function ensurePartitions(
  pool: Pool,
  interval: PartitionInterval,
  ahead: number,
  now = new Date(),
): Promise<CreatedPartition[]> {
  await createDefaultPartition(pool);
  const created: CreatedPartition[] = [];
  let horizon = periodStart(now, interval);
  for (let i = 0; i < ahead; i++) horizon = nextPeriod(horizon, interval);
  const partitions = await listJournalPartitions(pool);
  let from = newestUpperBound(partitions) ?? periodStart(now, interval);
  while (from < nextPeriod(horizon, interval)) {
    // A bound that is not a period start (the conversion's first bound) is followed by a short partition up to the
    // next period start, so that every later partition is a whole period.
    const start = periodStart(from, interval);
    const to = nextPeriod(start, interval);
    const name = partitionName(from, interval);
    const adopted = await withTransaction(pool, (client) => createJournalPartition(client, name, from, to)).catch(
      (err: Error & { code?: string }) => {
        // 42P07: someone else created it meanwhile; 42P17: it would overlap a partition someone else created.
        if (err.code === '42P07' || err.code === '42P17') return undefined;
        throw err;
      },
    );
    if (adopted !== undefined) created.push({ name, from: from.toISOString(), to: to.toISOString(), adopted });
    from = to;
  }
  return created;
}

function newestUpperBound(partitions: JournalPartition[]): Date | undefined {
  const bounds = partitions.filter((p) => !p.isDefault && p.to).map((p) => p.to!.getTime());
  return bounds.length ? new Date(Math.max(...bounds)) : undefined;
}

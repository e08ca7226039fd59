import pg from 'pg';
import type { Config } from '../shared/config';
import type { Logger } from '../shared/logger';
import { migrate } from '../shared/migrate';
import { classifyDeadLetters } from '../journal/error-class';
import { convertJournalToPartitions } from './convert';
import { ensurePartitions } from './partitions';

export type JournalLayout = Pick<Config['journal'], 'partitionInterval' | 'partitionsAhead'>;

export const DEFAULT_JOURNAL_LAYOUT: JournalLayout = { partitionInterval: 'month', partitionsAhead: 3 };

/**
 * Brings a database to the current schema: the SQL migrations, then (under the same lock) the journal's conversion
 * to time partitions when it is still one table, then its partitions up to `partitionsAhead` periods from now, then
 * the error class of dead letters written before 015 (or by a process older than it, during a rolling start).
 */
export async function prepareDatabase(
  databaseUrl: string,
  log: Logger,
  layout: JournalLayout = DEFAULT_JOURNAL_LAYOUT,
): Promise<string[]> {
  return migrate(databaseUrl, log, async (client) => {
    await convertJournalToPartitions(client, layout.partitionInterval, log);
    const pool = new pg.Pool({ connectionString: databaseUrl, max: 1, application_name: 'crm-events-sink-migrate' });
    try {
      const created = await ensurePartitions(pool, layout.partitionInterval, layout.partitionsAhead);
      if (created.length) log.info({ created }, `Created ${created.length} journal partition(s)`);
      const classifiedRows = await classifyDeadLetters(pool);
      if (classifiedRows) log.info({ classified: classifiedRows }, `Classified ${classifiedRows} dead letter(s)`);
    } finally {
      await pool.end();
    }
  });
}

import type pg from 'pg';
import { JOURNAL_DEFAULT_PARTITION, JOURNAL_INDEXES, LEGACY_TWIN_INDEXES } from './journal-partitions';

/**
 * The statements of the journal's online conversion to time partitions (lifecycle/convert.ts orders them). Each
 * runs on a plain client outside any transaction, except switchToPartitions, which is one.
 */

/** Builds, CONCURRENTLY, the non-unique twins of the single table's unique indexes (an invalid leftover is rebuilt). */
export async function buildLegacyTwinIndexes(client: pg.Client): Promise<void> {
  for (const [name, definition] of Object.entries(LEGACY_TWIN_INDEXES)) {
    const { rows } = await client.query<{ valid: boolean }>(
      'SELECT i.indisvalid AS valid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = $1',
      [name],
    );
    if (rows[0] && !rows[0].valid) await client.query(`DROP INDEX CONCURRENTLY ${name}`);
    await client.query(`CREATE INDEX CONCURRENTLY IF NOT EXISTS ${name} ON event_journal ${definition}`);
  }
}

export async function journalIsEmpty(client: pg.Client): Promise<boolean> {
  const { rows } = await client.query<{ empty: boolean }>('SELECT NOT EXISTS (SELECT 1 FROM event_journal) AS empty');
  return rows[0].empty;
}

/** CHECK (received_at < bound), added NOT VALID, then validated: a scan that does not block writers. */
export async function boundReceivedAt(client: pg.Client, bound: Date): Promise<void> {
  await client.query('ALTER TABLE event_journal DROP CONSTRAINT IF EXISTS event_journal_before_bound');
  await client.query(
    `ALTER TABLE event_journal ADD CONSTRAINT event_journal_before_bound
       CHECK (received_at < '${bound.toISOString()}') NOT VALID`,
  );
  await client.query('ALTER TABLE event_journal VALIDATE CONSTRAINT event_journal_before_bound');
}

/** An empty partitioned table with the journal's columns, defaults and indexes (replacing a leftover one). */
export async function createPartitionedTwin(client: pg.Client): Promise<void> {
  await client.query('DROP TABLE IF EXISTS event_journal_partitioned');
  await client.query(
    `CREATE TABLE event_journal_partitioned (LIKE event_journal INCLUDING DEFAULTS INCLUDING STORAGE)
       PARTITION BY RANGE (received_at)`,
  );
  for (const [name, definition] of Object.entries(JOURNAL_INDEXES)) {
    await client.query(`CREATE INDEX ${name} ON event_journal_partitioned ${definition}`);
  }
}

/**
 * The switch, in one transaction that waits at most `lockTimeout` for the table: the single table renamed to
 * `legacyName` and attached as the partition [MINVALUE, bound) of the partitioned twin, which takes the name
 * event_journal, the id sequence and a default partition. Throws (SQLSTATE 55P03) when the lock was not had in time.
 */
export async function switchToPartitions(
  client: pg.Client,
  legacyName: string,
  bound: Date,
  lockTimeout: string,
): Promise<void> {
  try {
    await client.query('BEGIN');
    await client.query(`SET LOCAL lock_timeout = '${lockTimeout}'`);
    await client.query('LOCK TABLE event_journal IN ACCESS EXCLUSIVE MODE');
    await client.query(`ALTER TABLE event_journal RENAME TO ${legacyName}`);
    await client.query('ALTER TABLE event_journal_partitioned RENAME TO event_journal');
    await client.query(
      `ALTER TABLE event_journal ATTACH PARTITION ${legacyName} FOR VALUES FROM (MINVALUE) TO ('${bound.toISOString()}')`,
    );
    await client.query('ALTER SEQUENCE event_journal_id_seq OWNED BY event_journal.id');
    await client.query(`CREATE TABLE ${JOURNAL_DEFAULT_PARTITION} PARTITION OF event_journal DEFAULT`);
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
  await client.query('ANALYZE event_journal');
}

import type { PoolClient } from 'pg';
import type { JournalArchiveSource } from './journal-archive';
import type { Queryable } from './queryable';
import { rememberRemovedSql } from './removed-records';

/**
 * The journal's time partitions (docs/lifecycle.md). event_journal is partitioned by RANGE (received_at); its
 * partitions are named event_journal_p<period start>, the rows from before the conversion live in one partition
 * named event_journal_before_<bound>, and event_journal_default catches rows no partition covers.
 */
export const JOURNAL_DEFAULT_PARTITION = 'event_journal_default';

/**
 * The journal's indexes, on the partitioned table (so on every partition). None is unique: a unique index on a
 * partitioned table must contain the partition key, which no record identity does (redelivery.ts serialises writers
 * instead). The comments say which queries use each one.
 */
export const JOURNAL_INDEXES: Record<string, string> = {
  // Lookups by id (GET /events/:id, replays by id), keyset pages, the live stream's catch-up.
  journal_id: '(id)',
  // What is stored at some Kafka coordinates (redelivery proof, coordinate reuse).
  journal_record_key: '(topic, kafka_partition, kafka_offset, content_hash)',
  // A replay's copy of an event (journaled once per replay and event).
  journal_replay_copy: `((payload->>'_replay_id'), (payload->>'_replayed_from_event_id'))
    WHERE replay_count > 0 AND payload ? '_replay_id'`,
  // Lineage: the replays of an event.
  journal_replayed_from: `((payload->>'_replayed_from_event_id')) WHERE replay_count > 0`,
  // API filters and the seeds' queries: tenant + time, topic + time, time; tenant + topic newest first.
  journal_tenant_received: '(tenant_id, received_at DESC, id DESC)',
  journal_topic_received: '(topic, received_at DESC, id DESC)',
  journal_received: '(received_at, id)',
  journal_tenant_topic_id: '(tenant_id, topic, id DESC)',
  journal_replay_count: '(replay_count)',
};

/**
 * What the single table from before the conversion must have before it can be attached as a partition without a
 * rebuild under lock: the non-unique twins of its unique indexes (built CONCURRENTLY, ingest keeps writing).
 */
export const LEGACY_TWIN_INDEXES: Record<string, string> = {
  event_journal_id_plain: JOURNAL_INDEXES.journal_id,
  event_journal_record_key_plain: JOURNAL_INDEXES.journal_record_key,
  event_journal_replay_copy_plain: JOURNAL_INDEXES.journal_replay_copy,
};

export interface JournalPartition {
  name: string;
  /** Lower bound (inclusive); null for MINVALUE. */
  from: Date | null;
  /** Upper bound (exclusive); null for MAXVALUE. */
  to: Date | null;
  isDefault: boolean;
}

/** Whether event_journal is already the partitioned table. */
export async function journalIsPartitioned(db: Queryable): Promise<boolean> {
  const { rows } = await db.query<{ kind: string }>(
    "SELECT relkind::text AS kind FROM pg_class WHERE oid = 'event_journal'::regclass",
  );
  return rows[0]?.kind === 'p';
}

/** The journal's partitions with their bounds, oldest first, the default partition last. */
export async function listJournalPartitions(db: Queryable): Promise<JournalPartition[]> {
  const { rows } = await db.query<{ name: string; bound: string; lo: Date | null; hi: Date | null }>(
    `SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound,
            (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \\(''([^'']+)''\\)'))[1]::timestamptz AS lo,
            (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \\(''([^'']+)''\\)'))[1]::timestamptz AS hi
       FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = 'event_journal'::regclass`,
  );
  return rows
    .map((r) => ({ name: r.name, from: r.lo, to: r.hi, isDefault: r.bound === 'DEFAULT' }))
    .sort((a, b) =>
      a.isDefault !== b.isDefault
        ? a.isDefault
          ? 1
          : -1
        : (a.from?.getTime() ?? -Infinity) - (b.from?.getTime() ?? -Infinity),
    );
}

export interface PartitionStats extends JournalPartition {
  /** Postgres' estimate (pg_class.reltuples; -1 before the first ANALYZE). */
  estimatedRows: number;
  bytes: number;
}

/** The partitions with their size on disk and estimated row count, for operators (GET /maintenance). */
export async function journalPartitionStats(db: Queryable): Promise<PartitionStats[]> {
  const partitions = await listJournalPartitions(db);
  const { rows } = await db.query<{ name: string; estimate: number; bytes: string }>(
    `SELECT c.relname AS name, c.reltuples::float8 AS estimate, pg_total_relation_size(c.oid)::text AS bytes
       FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'event_journal'::regclass`,
  );
  const byName = new Map(rows.map((r) => [r.name, r]));
  return partitions.map((p) => ({
    ...p,
    estimatedRows: byName.get(p.name)?.estimate ?? -1,
    bytes: Number(byName.get(p.name)?.bytes ?? 0),
  }));
}

/** Rows in the default partition: rows no partition covered when they were written (an alert). */
export async function countDefaultPartitionRows(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${JOURNAL_DEFAULT_PARTITION}`);
  return rows[0].n;
}

/** Partitions that start after now: how far ahead maintenance has kept the journal. */
export async function countPartitionsAhead(db: Queryable): Promise<number> {
  const partitions = await listJournalPartitions(db);
  return partitions.filter((p) => !p.isDefault && p.from !== null && p.from.getTime() > Date.now()).length;
}

/**
 * Creates the partition [from, to) inside the caller's transaction: as a plain table first, into which the rows of
 * the default partition that belong to it are moved, then attached (Postgres checks the bound against the table and
 * the default partition). Strays are so adopted by the partition they belong to, never lost.
 */
export async function createJournalPartition(client: PoolClient, name: string, from: Date, to: Date): Promise<number> {
  await client.query(
    `CREATE TABLE ${ident(name)} (LIKE event_journal INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)`,
  );
  // The ATTACH below locks the default partition anyway; taking that lock first keeps a writer from committing a row
  // of this range into it between the move and the ATTACH's check (which would fail with 23514).
  await client.query(`LOCK TABLE ${JOURNAL_DEFAULT_PARTITION} IN ACCESS EXCLUSIVE MODE`);
  const moved = await client.query(
    `WITH moved AS (
       DELETE FROM ${JOURNAL_DEFAULT_PARTITION} WHERE received_at >= $1 AND received_at < $2 RETURNING *
     ) INSERT INTO ${ident(name)} SELECT * FROM moved`,
    [from, to],
  );
  await client.query(
    `ALTER TABLE event_journal ATTACH PARTITION ${ident(name)}
       FOR VALUES FROM ('${from.toISOString()}') TO ('${to.toISOString()}')`,
  );
  return moved.rowCount ?? 0;
}

export async function createDefaultPartition(client: Queryable): Promise<void> {
  await client.query(`CREATE TABLE IF NOT EXISTS ${JOURNAL_DEFAULT_PARTITION} PARTITION OF event_journal DEFAULT`);
}

/**
 * Inside a retention step's transaction: waits at most 10 s for the partition, then holds it against writers
 * (SHARE) until the transaction ends, so that the rows counted are the rows removed.
 */
export async function holdPartitionForRemoval(client: PoolClient, name: string): Promise<void> {
  await client.query("SET LOCAL lock_timeout = '10s'");
  await client.query(`LOCK TABLE ${ident(name)} IN SHARE MODE`);
}

/**
 * Inside a transaction that withdraws a segment of the partition: holds it against writers and against a removal in
 * flight (SHARE ROW EXCLUSIVE conflicts with the SHARE a removal holds), so that the rows found still journaled stay
 * so until the segment is gone.
 */
export async function holdPartitionForWithdrawal(client: PoolClient, name: string): Promise<void> {
  await client.query("SET LOCAL lock_timeout = '10s'");
  await client.query(`LOCK TABLE ${ident(name)} IN SHARE ROW EXCLUSIVE MODE`);
}

/**
 * Makes the caller's transaction one snapshot (a count and the rows read after it agree), allowed to last: a cursor's
 * statement_timeout covers the whole cursor, not each fetch, and archiving a partition takes longer than the pool's
 * 30 s. The activity's heartbeat and start-to-close timeout bound it instead.
 */
export async function oneSnapshot(client: PoolClient): Promise<void> {
  await client.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ');
  await client.query("SET LOCAL statement_timeout = '2h'");
}

/** Detaches and drops a partition (after its rows were archived and verified, or when it is empty). */
export async function dropJournalPartition(client: PoolClient, name: string): Promise<void> {
  await client.query(`ALTER TABLE event_journal DETACH PARTITION ${ident(name)}`);
  await client.query(`DROP TABLE ${ident(name)}`);
}

function sourceWhere(source: JournalArchiveSource, values: unknown[], maxId?: number): string {
  const where = ['true'];
  if (source.receivedFrom !== undefined) where.push(`received_at >= $${values.push(source.receivedFrom)}`);
  if (source.receivedBefore !== undefined) where.push(`received_at < $${values.push(source.receivedBefore)}`);
  if (source.topic !== undefined) where.push(`topic = $${values.push(source.topic)}`);
  if (maxId !== undefined) where.push(`id <= $${values.push(maxId)}`);
  return where.join(' AND ');
}

/** Rows of a partition (optionally one topic's, before a time, up to an id) — what a retention step removes. */
export async function countJournalRows(db: Queryable, source: JournalArchiveSource, maxId?: number): Promise<number> {
  const values: unknown[] = [];
  const { rows } = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM ${ident(source.table)} WHERE ${sourceWhere(source, values, maxId)}`,
    values,
  );
  return rows[0].n;
}

/**
 * Remembers those rows in removed_records before they are removed, the ones Kafka may still deliver again (received
 * since `horizon`; null = all), in the caller's transaction; returns how many.
 */
export async function rememberRemovedJournalRows(
  db: Queryable,
  source: JournalArchiveSource,
  maxId: number,
  horizon: Date | null,
): Promise<number> {
  const values: unknown[] = [];
  const where = sourceWhere(source, values, maxId);
  const result = await db.query(
    rememberRemovedSql(ident(source.table), where, 'retention', `$${values.push(horizon)}`, 'event_journal'),
    values,
  );
  return result.rowCount ?? 0;
}

/** Deletes those rows (after they were archived); returns how many. */
export async function deleteJournalRows(db: Queryable, source: JournalArchiveSource, maxId: number): Promise<number> {
  const values: unknown[] = [];
  const result = await db.query(
    `DELETE FROM ${ident(source.table)} WHERE ${sourceWhere(source, values, maxId)}`,
    values,
  );
  return result.rowCount ?? 0;
}

/** Partition names are generated here (event_journal_…); anything else is refused rather than quoted. */
function ident(name: string): string {
  if (!/^event_journal_[a-z0-9_]+$/.test(name)) throw new Error(`Not a journal partition name: ${name}`);
  return name;
}

export { ident as journalPartitionIdent };

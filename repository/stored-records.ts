import { isOutage } from '../shared/db';
import type { Queryable } from './queryable';

/**
 * A Kafka record as consumed, as both event_journal and event_dlq store it. Offsets travel as strings (Kafka int64);
 * `key` is the key as text for display, `keyBytes` the key as it was.
 */
export interface StoredRecord {
  topic: string;
  partition: number | null;
  offset: string | null;
  key: string | null;
  keyBytes: Buffer | null;
  /** kafka_headers as JSON text (journal/headers.ts encodes it), null when the record had none. */
  headersJson: string | null;
  timestamp: Date | null;
  /** SHA-256 of the record as consumed; with the coordinates, the journal's unique key. */
  contentHash: Buffer | null;
}

/** What is already stored at some Kafka coordinates: the offset and the content hash (null before 007). */
export interface StoredAt {
  offset: string;
  content_hash: Buffer | null;
}

/** The two tables a consumed record can end in. */
export type RecordTable = 'event_journal' | 'event_dlq';

/** Where a record's coordinates can be found: its row, or the note of a row removed (repository/removed-records.ts). */
export interface StoredRecords {
  event_journal: StoredAt[];
  event_dlq: StoredAt[];
  /** Rows retention or an erasure removed: content_hash is the keyed hash removed_records holds. */
  removed_records: StoredAt[];
}

/**
 * What the journal, the DLQ and removed_records hold at offsets lo..hi of one partition, in one round trip: one index
 * range scan per table (and journal partition) on the prefix of its coordinates index. Finds nothing in the common
 * case.
 */
export async function recordsAt(
  db: Queryable,
  topic: string,
  partition: number,
  lo: string,
  hi: string,
): Promise<StoredRecords> {
  const at = 'WHERE topic = $1 AND kafka_partition = $2 AND kafka_offset BETWEEN $3 AND $4';
  const { rows } = await db.query<StoredAt & { store: keyof StoredRecords }>(
    `SELECT 'event_journal' AS store, kafka_offset::text AS offset, content_hash FROM event_journal ${at}
     UNION ALL
     SELECT 'event_dlq', kafka_offset::text, content_hash FROM event_dlq ${at}
     UNION ALL
     SELECT 'removed_records', kafka_offset::text, record_hash FROM removed_records ${at}`,
    [topic, partition, lo, hi],
  );
  const stored: StoredRecords = { event_journal: [], event_dlq: [], removed_records: [] };
  for (const { store, offset, content_hash } of rows) stored[store].push({ offset, content_hash });
  return stored;
}

/**
 * A comparison with rows from before 007, run inside the caller's transaction behind a savepoint: a candidate Postgres
 * cannot compare (its text is not jsonb) equals nothing and leaves the transaction usable, but an outage is thrown,
 * so that the batch waits instead of counting a redelivery as a new record.
 */
export async function sameAsLegacy(db: Queryable, text: string, values: unknown[]): Promise<boolean> {
  await db.query('SAVEPOINT legacy_compare');
  try {
    const { rows } = await db.query<{ same: boolean }>(text, values);
    await db.query('RELEASE SAVEPOINT legacy_compare');
    return rows.some((r) => r.same);
  } catch (err) {
    if (isOutage(err)) throw err;
    await db.query('ROLLBACK TO SAVEPOINT legacy_compare');
    return false;
  }
}

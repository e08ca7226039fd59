import type { Remover } from '../journal/kinds';
import type { Queryable } from './queryable';
import { sameAsLegacy } from './stored-records';

/**
 * removed_records (sql/011): the Kafka coordinates and keyed hash of rows retention or an erasure removed while Kafka
 * may still deliver their records again, so that redelivery dedupe still knows them (journal/redelivery.ts).
 */

const KEY = `(SELECT secret FROM service_keys WHERE name = 'erasure')`;

/**
 * A row's content as a row written before 007 (no content hash) is compared on redelivery: the journal's payload, a
 * dead letter's payload or raw value (repository/event-journal.ts legacyJournalMatches, event-dlq.ts
 * legacyDlqMatches). `legacy:` keeps these hashes apart from content-hash ones.
 */
export const LEGACY_CONTENT = {
  event_journal: 'payload::text',
  event_dlq: 'coalesce(payload::text, raw_value)',
} as const;

/**
 * The keyed hash stored for a row: SHA-256 of the erasure salt, then the row's content hash; for a row written before
 * 007, of the salt, then `legacy:` and its legacy content.
 */
const keyedHash = (legacyContent: string) =>
  `CASE WHEN content_hash IS NOT NULL THEN sha256(${KEY} || content_hash)
        ELSE sha256(${KEY} || convert_to('legacy:' || ${legacyContent}, 'UTF8')) END`;

/**
 * `INSERT … SELECT` remembering the rows of `source` (a table or a CTE of removed rows with the columns topic,
 * kafka_partition, kafka_offset, content_hash, received_at and those of its legacy content) that Kafka may still
 * deliver: received at or after the horizon parameter ($horizon, a timestamptz; null = Kafka keeps records for ever).
 * Rows without coordinates are not remembered: no redelivery can name them.
 */
export function rememberRemovedSql(
  source: string,
  where: string,
  removedBy: Remover,
  horizon: string,
  table: keyof typeof LEGACY_CONTENT,
): string {
  const legacy = LEGACY_CONTENT[table];
  return `INSERT INTO removed_records (topic, kafka_partition, kafka_offset, record_hash, removed_by, received_at)
          SELECT topic, kafka_partition, kafka_offset, ${keyedHash(legacy)}, '${removedBy}', received_at FROM ${source}
           WHERE ${where} AND kafka_partition IS NOT NULL AND kafka_offset IS NOT NULL
             AND (content_hash IS NOT NULL OR ${legacy} IS NOT NULL)
             AND (${horizon}::timestamptz IS NULL OR received_at >= ${horizon}::timestamptz)`;
}

/**
 * Whether a delivered record matches, in its legacy form, a note at its coordinates: its payload (as jsonb text) or
 * raw value hashed as rememberRemovedSql hashes a row written before 007. Run behind a savepoint: a payload Postgres
 * refuses as jsonb matches nothing and leaves the transaction usable.
 */
export async function matchesLegacyNote(
  db: Queryable,
  at: { topic: string; partition: number; offset: string },
  content: { payloadJson: string | null; rawValue: string | null },
): Promise<boolean> {
  return sameAsLegacy(
    db,
    `SELECT record_hash = sha256(${KEY} || convert_to('legacy:' || coalesce($4::jsonb::text, $5), 'UTF8')) AS same
       FROM removed_records WHERE topic = $1 AND kafka_partition = $2 AND kafka_offset = $3`,
    [at.topic, at.partition, at.offset, content.payloadJson, content.rawValue],
  );
}

/** The horizon as a query parameter: rows received before it are out of Kafka's reach (null: never). */
export function redeliveryHorizon(horizonMs: number | null, now = Date.now()): Date | null {
  return horizonMs === null ? null : new Date(now - horizonMs);
}

/** Forgets removed records received before the horizon (Kafka no longer holds them); returns how many. */
export async function deleteRemovedRecordsBefore(db: Queryable, horizon: Date): Promise<number> {
  const result = await db.query('DELETE FROM removed_records WHERE received_at < $1', [horizon]);
  return result.rowCount ?? 0;
}

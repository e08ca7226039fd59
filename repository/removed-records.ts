import type { Remover } from '../journal/kinds';
import type { Queryable } from './queryable';

/**
 * removed_records (sql/011): the Kafka coordinates and keyed hash of rows retention or an erasure removed while Kafka
 * may still deliver their records again, so that redelivery dedupe still knows them (journal/redelivery.ts).
 */

/** The keyed hash stored for a row: SHA-256 of the erasure salt, then the row's content hash. */
const KEYED_HASH = `sha256((SELECT secret FROM service_keys WHERE name = 'erasure') || content_hash)`;

/**
 * `INSERT … SELECT` remembering the rows of `source` (a table or a CTE of removed rows with the columns topic,
 * kafka_partition, kafka_offset, content_hash, received_at) that Kafka may still deliver: received at or after the
 * horizon parameter ($horizon, a timestamptz; null = Kafka keeps records for ever). Rows without coordinates or
 * content hash (written before 007) are not remembered: their redeliveries are compared with what is still stored.
 */
export function rememberRemovedSql(source: string, where: string, removedBy: Remover, horizon: string): string {
  return `INSERT INTO removed_records (topic, kafka_partition, kafka_offset, record_hash, removed_by, received_at)
          SELECT topic, kafka_partition, kafka_offset, ${KEYED_HASH}, '${removedBy}', received_at FROM ${source}
           WHERE ${where} AND kafka_partition IS NOT NULL AND kafka_offset IS NOT NULL AND content_hash IS NOT NULL
             AND (${horizon}::timestamptz IS NULL OR received_at >= ${horizon}::timestamptz)`;
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

import type { DlqRecord } from '../repository/event-dlq';
import type { NewJournalEntry } from '../repository/event-journal';
import type { PoolClient } from '../shared/db';
import { appendOne, type AppendOneResult } from './append';
import { decodeHeaders, toRecordHeaders } from './headers';
import { DLQ_OPEN_STATUSES, type DlqBulkAction, type DlqStatus } from './kinds';
import { parseRecord, type KafkaRecord, type ParseOptions } from './record';

/**
 * What each bulk action acts on, and the status it moves an entry to (a retry's outcome is the retry's own). Entries
 * resolved or discarded are settled: no bulk action touches them again.
 */
export const BULK_RULES = {
  retry: { from: DLQ_OPEN_STATUSES },
  discard: { from: DLQ_OPEN_STATUSES, to: 'discarded' },
  park: { from: ['pending', 'retrying'], to: 'parked' },
  unpark: { from: ['parked'], to: 'pending' },
} as const satisfies Record<DlqBulkAction, { from: readonly DlqStatus[]; to?: DlqStatus }>;

/** What retrying one dead letter did: the journal row it now is, or why it still cannot be journaled. */
export type DeadLetterResult = AppendOneResult;

/**
 * Journals a dead letter, inside the caller's transaction: its record as consumed (raw bytes, key, headers,
 * timestamp, same content hash) goes through the consumer's parser again and, if it now passes, into the journal
 * (journal/append.ts appendOne; the caller holds the dead letter's row lock and marks it resolved, so it is journaled
 * once). An outage is thrown; anything else is the entry's error.
 */
export async function journalDeadLetter(
  client: PoolClient,
  entry: DlqRecord,
  options: ParseOptions,
): Promise<DeadLetterResult> {
  const value = deadLetterValue(entry);
  if (value === null) return { error: 'Entry has neither raw bytes, payload nor raw value to retry' };
  const parsed = parseRecord(deadLetterRecord(entry, value), options);
  if (!parsed.ok) return { error: parsed.dlq.error };
  return appendOne(client, deadLetterJournalEntry(entry, parsed.entry));
}

/**
 * The dead letter's record as consumed (its key, headers and timestamp), with `value` as its value: its own bytes for
 * a retry, the repaired value for a repair (journal/repair.ts).
 */
export function deadLetterRecord(entry: DlqRecord, value: Buffer): KafkaRecord {
  const headers = decodeHeaders(entry.kafka_headers);
  // Dead letters from before raw bytes were kept have no headers: the tenant the consumer found is given back.
  if (entry.raw_bytes === null && entry.tenant_id) headers.push(['x-tenant-id', Buffer.from(entry.tenant_id)]);
  return {
    topic: entry.topic,
    partition: entry.kafka_partition ?? 0,
    offset: String(entry.kafka_offset ?? 0),
    key: entry.kafka_key_bytes ?? (entry.kafka_key === null ? null : Buffer.from(entry.kafka_key)),
    value,
    headers: toRecordHeaders(headers),
    timestamp: entry.kafka_timestamp ? String(entry.kafka_timestamp.getTime()) : undefined,
  };
}

/**
 * The journal entry of a dead letter's record as parsed: its coordinates and its content hash (the record is the
 * one consumed, so that a later redelivery of it is recognised, and a second journaling of it is refused by the
 * journal's unique index).
 */
export function deadLetterJournalEntry(entry: DlqRecord, parsed: NewJournalEntry): NewJournalEntry {
  const hasCoordinates = entry.kafka_partition !== null && entry.kafka_offset !== null;
  return {
    ...parsed,
    partition: hasCoordinates ? entry.kafka_partition : null,
    offset: hasCoordinates ? String(entry.kafka_offset) : null,
    contentHash: entry.content_hash,
    // Dead letters from before 007 kept no headers: the tenant header given back above was not the record's.
    headersJson: entry.raw_bytes === null ? null : parsed.headersJson,
  };
}

/** The dead letter's value as consumed: its raw bytes, or (rows from before they were kept) its payload or text. */
export function deadLetterValue(entry: DlqRecord): Buffer | null {
  if (entry.raw_bytes !== null) return entry.raw_bytes;
  if (entry.payload_text !== null) return Buffer.from(entry.payload_text);
  if (entry.raw_value === null) return null;
  return entry.raw_value.startsWith('base64:')
    ? Buffer.from(entry.raw_value.slice('base64:'.length), 'base64')
    : Buffer.from(entry.raw_value);
}

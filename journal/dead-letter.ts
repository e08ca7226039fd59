import type { DlqRecord } from '../repository/event-dlq';
import { insertJournalEntries, journalIdOf, notifyJournaled, type NewJournalEntry } from '../repository/event-journal';
import type { PoolClient } from '../shared/db';
import { decodeHeaders, toRecordHeaders } from './headers';
import { isOutage } from '../shared/db';
import { parseRecord, type ParseOptions } from './record';

/** What retrying one dead letter did: the journal row it now is, or why it still cannot be journaled. */
export type DeadLetterResult = { journalId: number } | { error: string };

/**
 * Journals a dead letter, inside the caller's transaction: its record as consumed (raw bytes, key, headers,
 * timestamp, same content hash) goes through the consumer's parser again and, if it now passes, into the journal
 * behind a savepoint. Already journaled (same record) counts as done. An outage is thrown; anything else is the
 * entry's error.
 */
export async function journalDeadLetter(
  client: PoolClient,
  entry: DlqRecord,
  options: ParseOptions,
): Promise<DeadLetterResult> {
  const journalEntry = retryEntry(entry, options);
  if (typeof journalEntry === 'string') return { error: journalEntry };
  await client.query('SAVEPOINT dead_letter');
  try {
    const [row] = await insertJournalEntries(client, [journalEntry]);
    const journalId = row?.id ?? (await journalIdOf(client, journalEntry));
    await client.query('RELEASE SAVEPOINT dead_letter');
    if (journalId === undefined)
      return { error: 'Journal refused the entry as already journaled, but no row holds it' };
    if (row) await notifyJournaled(client, row.id);
    return { journalId };
  } catch (err) {
    if (isOutage(err)) throw err;
    await client.query('ROLLBACK TO SAVEPOINT dead_letter');
    const { message, code } = err as { message: string; code?: string };
    return { error: `Insert into event_journal failed: ${message}${code ? ` (SQLSTATE ${code})` : ''}` };
  }
}

/** The dead letter's record as consumed, parsed again; a string is the reason it still fails. */
function retryEntry(entry: DlqRecord, options: ParseOptions): NewJournalEntry | string {
  const value = valueOf(entry);
  if (value === null) return 'Entry has neither raw bytes, payload nor raw value to retry';
  const headers = decodeHeaders(entry.kafka_headers);
  // Dead letters from before raw bytes were kept have no headers: the tenant the consumer found is given back.
  if (entry.raw_bytes === null && entry.tenant_id) headers.push(['x-tenant-id', Buffer.from(entry.tenant_id)]);
  const parsed = parseRecord(
    {
      topic: entry.topic,
      partition: entry.kafka_partition ?? 0,
      offset: String(entry.kafka_offset ?? 0),
      key: entry.kafka_key_bytes ?? (entry.kafka_key === null ? null : Buffer.from(entry.kafka_key)),
      value,
      headers: toRecordHeaders(headers),
      timestamp: entry.kafka_timestamp ? String(entry.kafka_timestamp.getTime()) : undefined,
    },
    options,
  );
  if (!parsed.ok) return parsed.dlq.error;
  const hasCoordinates = entry.kafka_partition !== null && entry.kafka_offset !== null;
  return {
    ...parsed.entry,
    partition: hasCoordinates ? entry.kafka_partition : null,
    offset: hasCoordinates ? String(entry.kafka_offset) : null,
    // The record is the one consumed: the dead letter's hash, so that a later redelivery of it is recognised.
    contentHash: entry.content_hash,
    // Dead letters from before 007 kept no headers: the tenant header given back above was not the record's.
    headersJson: entry.raw_bytes === null ? null : parsed.entry.headersJson,
  };
}

function valueOf(entry: DlqRecord): Buffer | null {
  if (entry.raw_bytes !== null) return entry.raw_bytes;
  if (entry.payload_text !== null) return Buffer.from(entry.payload_text);
  if (entry.raw_value === null) return null;
  return entry.raw_value.startsWith('base64:')
    ? Buffer.from(entry.raw_value.slice('base64:'.length), 'base64')
    : Buffer.from(entry.raw_value);
}

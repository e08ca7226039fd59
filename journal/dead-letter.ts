import {
  setDlqErrorClasses,
  unclassifiedDlqEntries,
  type ClassifiedDlqEntry,
  type DlqRecord,
  type NewDlqEntry,
} from '../repository/event-dlq';
import type { Queryable } from '../repository/queryable';
import { insertJournalEntries, journalIdOf, notifyJournaled, type NewJournalEntry } from '../repository/event-journal';
import type { PoolClient } from '../shared/db';
import { decodeHeaders, toRecordHeaders } from './headers';
import { isOutage } from '../shared/db';
import { DLQ_OPEN_STATUSES, REJECT_REASONS, type DlqBulkAction, type DlqStatus } from './kinds';
import { SAFE_FORM_NOTE } from './outage';
import { parseRecord, type ParseOptions } from './record';

/** Reasons whose error the parser writes from one template: the reason alone is their class (values only vary). */
const TEMPLATED_REASONS: ReadonlySet<string> = new Set(
  REJECT_REASONS.filter((r) => r !== 'db_error' && r !== 'parse_error'),
);

/** Condition names (PostgreSQL Appendix A) of the SQLSTATEs a journal insert meets; others read `sqlstate_<code>`. */
const SQLSTATE_NAMES: Record<string, string> = {
  '22001': 'string_data_right_truncation',
  '22003': 'numeric_value_out_of_range',
  '22021': 'character_not_in_repertoire',
  '22P02': 'invalid_text_representation',
  '22P05': 'untranslatable_character',
  '23502': 'not_null_violation',
  '23503': 'foreign_key_violation',
  '23505': 'unique_violation',
  '23514': 'check_violation',
  '23P01': 'exclusion_violation',
  '54000': 'program_limit_exceeded',
  '54001': 'statement_too_complex',
  '57014': 'query_canceled',
};

const MAX_CLASS_LENGTH = 200;

/**
 * A dead letter's error class: a stable fingerprint of its reason and error, the same for every entry that failed
 * the same way whatever the values involved, and different for different reasons (it starts with the reason).
 * - a reason the parser words from one template (`invalid_json`, `missing_tenant`, `too_large`, …): the reason;
 * - `db_error` with a SQLSTATE: `db_error:<condition>`, plus `:<constraint>` when the error names one (digits
 *   dropped: a partition's own index names the same constraint per month), e.g. `db_error:check_violation:bar_block`;
 * - anything else (`parse_error`, `unknown`, a db_error without SQLSTATE): `<reason>:<normalised message>`, where
 *   quoted values, numbers, ids and offsets are stripped.
 * The one place the class is computed: ingest writes it with each dead letter, migration 012's online step
 * classifies older rows with it.
 */
export function errorClassOf(reason: string, error: string): string {
  const message = error.split(`[${SAFE_FORM_NOTE}`)[0];
  if (TEMPLATED_REASONS.has(reason)) return reason;
  const sqlstate = /\(SQLSTATE ([0-9A-Z]{5})\)/.exec(message)?.[1];
  if (reason === 'db_error' && sqlstate) {
    const condition = SQLSTATE_NAMES[sqlstate] ?? `sqlstate_${sqlstate.toLowerCase()}`;
    const constraint = /constraint "([^"]*)"/.exec(message)?.[1];
    const named = constraint === undefined ? '' : slug(constraint.replace(/[0-9]+/g, ''));
    return bounded(named ? `db_error:${condition}:${named}` : `db_error:${condition}`);
  }
  return bounded(`${reason}:${slug(normalised(message)) || 'no_message'}`);
}

/** A dead letter with its error class, ready for insertDlqEntries. */
export function classified<T extends NewDlqEntry>(entry: T): T & ClassifiedDlqEntry {
  return { ...entry, errorClass: errorClassOf(entry.reason, entry.error) };
}

/** The online step of migration 012: classifies dead letters written before it, a page at a time. */
export async function classifyDeadLetters(db: Queryable, pageSize = 1000): Promise<number> {
  let total = 0;
  for (;;) {
    const page = await unclassifiedDlqEntries(db, pageSize);
    if (page.length === 0) return total;
    await setDlqErrorClasses(
      db,
      page.map((row) => ({ id: row.id, errorClass: errorClassOf(row.reason, row.error) })),
    );
    total += page.length;
  }
}

/** The message without what varies from one entry to the next: quoted values, ids, numbers, offsets. */
function normalised(message: string): string {
  return message
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, ' ')
    .replace(/\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b/gi, ' ')
    .replace(/\b(?:0x)?[0-9a-f]*[0-9][0-9a-f]*\b/gi, ' ')
    .replace(/[+-]?[0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?/gi, ' ');
}

function slug(text: string): string {
  return text
    .toLowerCase()
    .replace(/[^a-z_]+/g, '_')
    .replace(/_+/g, '_')
    .replace(/^_|_$/g, '');
}

function bounded(errorClass: string): string {
  return errorClass.length > MAX_CLASS_LENGTH ? errorClass.slice(0, MAX_CLASS_LENGTH).replace(/_$/, '') : errorClass;
}

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

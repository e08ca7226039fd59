import type { PoolClient } from 'pg';
import type { DlqStatus } from '../journal/kinds';
import { sameAsLegacy, type StoredRecord } from './stored-records';
import type { Queryable } from './queryable';

export type { DlqStatus } from '../journal/kinds';

/** A record the sink could not journal, with why, and the record exactly as consumed. */
export interface NewDlqEntry extends StoredRecord {
  tenantId: string | null;
  /** The value as JSON when it parsed as JSON (and jsonb takes it). */
  payloadJson: string | null;
  /** The value as text when it did not ("base64:" if not UTF-8). */
  rawValue: string | null;
  /** The value's bytes as consumed (null for a tombstone). */
  rawBytes: Buffer | null;
  error: string;
  reason: string;
}

/** A dead letter ready to be written: with its error class (journal/dead-letter.ts computes it). */
export interface ClassifiedDlqEntry extends NewDlqEntry {
  errorClass: string;
}

export interface DlqRow {
  id: number;
  topic: string;
  tenant_id: string | null;
  reason: string;
  error: string;
  /** Null only for rows written before 012 and not yet classified (lifecycle/prepare.ts classifies them). */
  error_class: string | null;
  kafka_partition: number | null;
  kafka_offset: number | null;
  received_at: Date;
}

const INSERT_ENTRIES = `
  INSERT INTO event_dlq (topic, tenant_id, payload, raw_value, error, reason, kafka_partition, kafka_offset, kafka_key,
                         raw_bytes, kafka_key_bytes, kafka_headers, kafka_timestamp, content_hash, error_class)
  SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::text[], $5::text[], $6::text[], $7::int[],
                       $8::bigint[], $9::text[], $10::bytea[], $11::bytea[], $12::jsonb[], $13::timestamptz[],
                       $14::bytea[], $15::text[])
  ON CONFLICT DO NOTHING
  RETURNING id, kafka_offset::text AS offset, content_hash`;

/** A dead letter written: which record (offset and hash) got which id. */
export interface InsertedDlqRow {
  id: number;
  offset: string | null;
  content_hash: Buffer | null;
}

/**
 * Appends dead letters in one statement. A record already dead-lettered (same coordinates, same content hash) is not
 * added twice and is absent from the result.
 */
export async function insertDlqEntries(db: Queryable, entries: ClassifiedDlqEntry[]): Promise<InsertedDlqRow[]> {
  if (entries.length === 0) return [];
  const { rows } = await db.query<InsertedDlqRow>(INSERT_ENTRIES, [
    entries.map((e) => e.topic),
    entries.map((e) => e.tenantId),
    entries.map((e) => e.payloadJson),
    entries.map((e) => e.rawValue),
    entries.map((e) => e.error),
    entries.map((e) => e.reason),
    entries.map((e) => e.partition),
    entries.map((e) => e.offset),
    entries.map((e) => e.key),
    entries.map((e) => e.rawBytes),
    entries.map((e) => e.keyBytes),
    entries.map((e) => e.headersJson),
    entries.map((e) => e.timestamp),
    entries.map((e) => e.contentHash),
    entries.map((e) => e.errorClass),
  ]);
  return rows;
}

/**
 * Of these rejected records, the offsets where a dead letter written before content hashes existed has the same
 * reason and the same value (raw text, or payload as jsonb): those are redeliveries. Runs inside a transaction.
 */
export async function legacyDlqMatches(
  db: PoolClient,
  topic: string,
  partition: number,
  candidates: Array<{ offset: string; reason: string; rawValue: string | null; payloadJson: string | null }>,
): Promise<Set<string>> {
  const matches = new Set<string>();
  for (const c of candidates) {
    const same = await sameAsLegacy(
      db,
      `SELECT reason = $4 AND raw_value IS NOT DISTINCT FROM $5 AND payload IS NOT DISTINCT FROM $6::jsonb AS same
         FROM event_dlq
        WHERE topic = $1 AND kafka_partition = $2 AND kafka_offset = $3 AND content_hash IS NULL`,
      [topic, partition, c.offset, c.reason, c.rawValue, c.payloadJson],
    );
    if (same) matches.add(c.offset);
  }
  return matches;
}

/** Dead letters not settled, neither resolved nor discarded (the crm_events_dlq_size gauge). */
export async function countDlqEntries(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM event_dlq WHERE status NOT IN ('resolved', 'discarded')",
  );
  return rows[0].n;
}

/** Dead letters written before error classes (012), a page at a time, oldest first. */
export async function unclassifiedDlqEntries(
  db: Queryable,
  limit: number,
): Promise<Array<{ id: number; reason: string; error: string }>> {
  const { rows } = await db.query<{ id: number; reason: string; error: string }>(
    'SELECT id, reason, error FROM event_dlq WHERE error_class IS NULL ORDER BY id LIMIT $1',
    [limit],
  );
  return rows;
}

/** Stores computed error classes (a row already classified keeps its class). */
export async function setDlqErrorClasses(db: Queryable, classes: Array<{ id: number; errorClass: string }>) {
  await db.query(
    `UPDATE event_dlq d SET error_class = c.error_class
       FROM unnest($1::bigint[], $2::text[]) AS c (id, error_class)
      WHERE d.id = c.id AND d.error_class IS NULL`,
    [classes.map((c) => c.id), classes.map((c) => c.errorClass)],
  );
}

/** A dead letter with everything a retry needs. */
export interface DlqRecord extends DlqRow {
  payload: Record<string, unknown> | null;
  /** The payload as Postgres prints it (no number loses a digit on the way through Node). */
  payload_text: string | null;
  raw_value: string | null;
  kafka_key: string | null;
  raw_bytes: Buffer | null;
  kafka_key_bytes: Buffer | null;
  kafka_headers: unknown;
  kafka_timestamp: Date | null;
  content_hash: Buffer | null;
  status: DlqStatus;
  attempts: number;
  last_error: string | null;
  next_attempt_at: Date;
  resolved_at: Date | null;
  resolved_event_id: number | null;
}

const RECORD_COLUMNS = `id, topic, tenant_id, reason, error, error_class, kafka_partition, kafka_offset, kafka_key, received_at,
  payload, raw_value, status, attempts, last_error, next_attempt_at, resolved_at, resolved_event_id,
  raw_bytes, kafka_key_bytes, kafka_headers, kafka_timestamp, content_hash, payload::text AS payload_text`;

/** What the DLQ listing shows: no payload, raw value or bytes (a page of 1000 would carry them only to drop them). */
export type DlqListRow = Pick<
  DlqRecord,
  keyof DlqRow | 'status' | 'attempts' | 'last_error' | 'next_attempt_at' | 'resolved_at' | 'resolved_event_id'
>;

const LIST_COLUMNS = `id, topic, tenant_id, reason, error, error_class, kafka_partition, kafka_offset, received_at,
  status, attempts, last_error, next_attempt_at, resolved_at, resolved_event_id`;

export interface DlqQuery {
  status?: DlqStatus;
  topic?: string;
  tenantId?: string;
  before?: number;
  limit: number;
}

/** Filtered DLQ listing, newest first, keyset-paginated on id. */
export async function listDlq(db: Queryable, q: DlqQuery): Promise<DlqListRow[]> {
  const values: unknown[] = [];
  const clauses: string[] = [];
  if (q.status) clauses.push(`status = $${values.push(q.status)}`);
  if (q.topic) clauses.push(`topic = $${values.push(q.topic)}`);
  if (q.tenantId) clauses.push(`tenant_id = $${values.push(q.tenantId)}`);
  if (q.before !== undefined) clauses.push(`id < $${values.push(q.before)}`);
  const where = clauses.length ? `WHERE ${clauses.join(' AND ')}` : '';
  const { rows } = await db.query<DlqListRow>(
    `SELECT ${LIST_COLUMNS} FROM event_dlq ${where} ORDER BY id DESC LIMIT $${values.push(q.limit)}`,
    values,
  );
  return rows;
}

export async function getDlqEntry(db: Queryable, id: number, forUpdate = false): Promise<DlqRecord | undefined> {
  const { rows } = await db.query<DlqRecord>(
    `SELECT ${RECORD_COLUMNS} FROM event_dlq WHERE id = $1 ${forUpdate ? 'FOR UPDATE' : ''}`,
    [id],
  );
  return rows[0];
}

/** Ids of entries due for a retry at `now` (workflow time), oldest first. */
export async function dueDlqIds(db: Queryable, now: Date, limit: number): Promise<number[]> {
  const { rows } = await db.query<{ id: number }>(
    `SELECT id FROM event_dlq WHERE status IN ('pending', 'retrying') AND next_attempt_at <= $1
      ORDER BY next_attempt_at, id LIMIT $2`,
    [now, limit],
  );
  return rows.map((r) => r.id);
}

export async function markDlqResolved(db: Queryable, id: number, journalId: number, now: Date): Promise<void> {
  await db.query(
    `UPDATE event_dlq SET status = 'resolved', attempts = attempts + 1, resolved_at = $3, resolved_event_id = $2,
            last_error = NULL WHERE id = $1`,
    [id, journalId, now],
  );
}

/** Records a failed attempt: the entry backs off until `nextAttemptAt`, or is parked for an operator. */
export async function markDlqFailed(
  db: Queryable,
  id: number,
  error: string,
  nextAttemptAt: Date,
  park: boolean,
): Promise<void> {
  await db.query(
    `UPDATE event_dlq SET status = $4, attempts = attempts + 1, last_error = $2, next_attempt_at = $3 WHERE id = $1`,
    [id, error, nextAttemptAt, park ? 'parked' : 'retrying'],
  );
}

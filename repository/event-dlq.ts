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

export interface DlqRow {
  id: number;
  topic: string;
  tenant_id: string | null;
  reason: string;
  error: string;
  kafka_partition: number | null;
  kafka_offset: number | null;
  received_at: Date;
}

const INSERT_ENTRIES = `
  INSERT INTO event_dlq (topic, tenant_id, payload, raw_value, error, reason, kafka_partition, kafka_offset, kafka_key,
                         raw_bytes, kafka_key_bytes, kafka_headers, kafka_timestamp, content_hash)
  SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::text[], $5::text[], $6::text[], $7::int[],
                       $8::bigint[], $9::text[], $10::bytea[], $11::bytea[], $12::jsonb[], $13::timestamptz[],
                       $14::bytea[])
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
export async function insertDlqEntries(db: Queryable, entries: NewDlqEntry[]): Promise<InsertedDlqRow[]> {
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

/** Dead letters not yet resolved (the crm_events_dlq_size gauge). */
export async function countDlqEntries(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM event_dlq WHERE status <> 'resolved'");
  return rows[0].n;
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

const RECORD_COLUMNS = `id, topic, tenant_id, reason, error, kafka_partition, kafka_offset, kafka_key, received_at,
  payload, raw_value, status, attempts, last_error, next_attempt_at, resolved_at, resolved_event_id,
  raw_bytes, kafka_key_bytes, kafka_headers, kafka_timestamp, content_hash, payload::text AS payload_text`;

/** What the DLQ listing shows: no payload, raw value or bytes (a page of 1000 would carry them only to drop them). */
export type DlqListRow = Pick<
  DlqRecord,
  keyof DlqRow | 'status' | 'attempts' | 'last_error' | 'next_attempt_at' | 'resolved_at' | 'resolved_event_id'
>;

const LIST_COLUMNS = `id, topic, tenant_id, reason, error, kafka_partition, kafka_offset, received_at,
  status, attempts, last_error, next_attempt_at, resolved_at, resolved_event_id`;

/**
 * What selects dead letters: the /dlq listing's filters, and a repair's selection. One field and one clause in
 * dlqFilterClauses add a filter to both.
 */
export interface DlqFilter {
  status?: DlqStatus;
  topic?: string;
  tenantId?: string;
  /** Exactly these entries. */
  ids?: number[];
}

export interface DlqQuery extends DlqFilter {
  before?: number;
  limit: number;
}

/** The WHERE clauses of a DLQ filter, its values appended to `values` as bind parameters. */
export function dlqFilterClauses(filter: DlqFilter, values: unknown[]): string[] {
  const clauses: string[] = [];
  if (filter.status) clauses.push(`status = $${values.push(filter.status)}`);
  if (filter.topic) clauses.push(`topic = $${values.push(filter.topic)}`);
  if (filter.tenantId) clauses.push(`tenant_id = $${values.push(filter.tenantId)}`);
  if (filter.ids) clauses.push(`id = ANY($${values.push(filter.ids)}::bigint[])`);
  return clauses;
}

/** Filtered DLQ listing, newest first, keyset-paginated on id. */
export async function listDlq(db: Queryable, q: DlqQuery): Promise<DlqListRow[]> {
  const values: unknown[] = [];
  const clauses = dlqFilterClauses(q, values);
  if (q.before !== undefined) clauses.push(`id < $${values.push(q.before)}`);
  const where = clauses.length ? `WHERE ${clauses.join(' AND ')}` : '';
  const { rows } = await db.query<DlqListRow>(
    `SELECT ${LIST_COLUMNS} FROM event_dlq ${where} ORDER BY id DESC LIMIT $${values.push(q.limit)}`,
    values,
  );
  return rows;
}

/** How many entries a filter selects, and the newest id among them (which pins a repair's selection). */
export async function countDlq(db: Queryable, filter: DlqFilter): Promise<{ matched: number; maxId: number }> {
  const values: unknown[] = [];
  const clauses = dlqFilterClauses(filter, values);
  const { rows } = await db.query<{ matched: number; max_id: number | null }>(
    `SELECT count(*)::int AS matched, max(id) AS max_id FROM event_dlq
      ${clauses.length ? `WHERE ${clauses.join(' AND ')}` : ''}`,
    values,
  );
  return { matched: rows[0].matched, maxId: rows[0].max_id ?? 0 };
}

/**
 * One page of the entries a filter selects, with everything a retry needs, oldest first: ids above `after`, up to
 * `maxId` (unlocked: a writer locks each entry again with getDlqEntry).
 */
export async function dlqPage(
  db: Queryable,
  filter: DlqFilter,
  page: { after: number; maxId: number; limit: number },
): Promise<DlqRecord[]> {
  const values: unknown[] = [];
  const clauses = dlqFilterClauses(filter, values);
  clauses.push(`id > $${values.push(page.after)}`, `id <= $${values.push(page.maxId)}`);
  const { rows } = await db.query<DlqRecord>(
    `SELECT ${RECORD_COLUMNS} FROM event_dlq WHERE ${clauses.join(' AND ')}
      ORDER BY id LIMIT $${values.push(page.limit)}`,
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

/** Dead letters of one reason and topic received in a window (the dlq_group_growing notification). */
export interface DlqGroupCount {
  reason: string;
  topic: string;
  count: number;
  oldest: Date;
  newest: Date;
}

/** Reason × topic groups with at least `threshold` dead letters received after `since` (idx_event_dlq_received). */
export async function dlqGroupsSince(db: Queryable, since: Date, threshold: number): Promise<DlqGroupCount[]> {
  const { rows } = await db.query<DlqGroupCount>(
    `SELECT reason, topic, count(*)::int AS count, min(received_at) AS oldest, max(received_at) AS newest
       FROM event_dlq WHERE received_at > $1
      GROUP BY reason, topic HAVING count(*) >= $2 ORDER BY reason, topic`,
    [since, threshold],
  );
  return rows;
}

import type { Queryable } from './queryable';

/** A record the sink could not journal, with why. */
export interface NewDlqEntry {
  topic: string;
  tenantId: string | null;
  payloadJson: string | null;
  rawValue: string | null;
  error: string;
  reason: string;
  partition: number | null;
  offset: string | null;
  key: string | null;
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
  INSERT INTO event_dlq (topic, tenant_id, payload, raw_value, error, reason, kafka_partition, kafka_offset, kafka_key)
  SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::text[], $5::text[], $6::text[], $7::int[],
                       $8::bigint[], $9::text[])
  ON CONFLICT (topic, kafka_partition, kafka_offset) DO NOTHING
  RETURNING id`;

/** Appends dead letters in one statement; a redelivered record already dead-lettered is not added twice. */
export async function insertDlqEntries(db: Queryable, entries: NewDlqEntry[]): Promise<number> {
  if (entries.length === 0) return 0;
  const { rowCount } = await db.query(INSERT_ENTRIES, [
    entries.map((e) => e.topic),
    entries.map((e) => e.tenantId),
    entries.map((e) => e.payloadJson),
    entries.map((e) => e.rawValue),
    entries.map((e) => e.error),
    entries.map((e) => e.reason),
    entries.map((e) => e.partition),
    entries.map((e) => e.offset),
    entries.map((e) => e.key),
  ]);
  return rowCount ?? 0;
}

/** Dead letters not yet resolved (the crm_events_dlq_size gauge). */
export async function countDlqEntries(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM event_dlq WHERE status <> 'resolved'");
  return rows[0].n;
}

export type DlqStatus = 'pending' | 'retrying' | 'resolved' | 'parked';

/** A dead letter with everything a retry needs. */
export interface DlqRecord extends DlqRow {
  payload: Record<string, unknown> | null;
  raw_value: string | null;
  kafka_key: string | null;
  status: DlqStatus;
  attempts: number;
  last_error: string | null;
  next_attempt_at: Date;
  resolved_at: Date | null;
  resolved_event_id: number | null;
}

const RECORD_COLUMNS = `id, topic, tenant_id, reason, error, kafka_partition, kafka_offset, kafka_key, received_at,
  payload, raw_value, status, attempts, last_error, next_attempt_at, resolved_at, resolved_event_id`;

export interface DlqQuery {
  status?: DlqStatus;
  topic?: string;
  tenantId?: string;
  before?: number;
  limit: number;
}

/** Filtered DLQ listing, newest first, keyset-paginated on id. */
export async function listDlq(db: Queryable, q: DlqQuery): Promise<DlqRecord[]> {
  const values: unknown[] = [];
  const clauses: string[] = [];
  if (q.status) clauses.push(`status = $${values.push(q.status)}`);
  if (q.topic) clauses.push(`topic = $${values.push(q.topic)}`);
  if (q.tenantId) clauses.push(`tenant_id = $${values.push(q.tenantId)}`);
  if (q.before !== undefined) clauses.push(`id < $${values.push(q.before)}`);
  const where = clauses.length ? `WHERE ${clauses.join(' AND ')}` : '';
  const { rows } = await db.query<DlqRecord>(
    `SELECT ${RECORD_COLUMNS} FROM event_dlq ${where} ORDER BY id DESC LIMIT $${values.push(q.limit)}`,
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

import type { PoolClient } from 'pg';
import { DLQ_STATUSES, type DlqStatus } from '../journal/kinds';
import { sharedLockSql, withExclusiveLock, type Pool } from '../shared/db';
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

/** A dead letter ready to be written: with its error class (journal/error-class.ts computes it). */
export interface ClassifiedDlqEntry extends NewDlqEntry {
  errorClass: string;
}

export interface DlqRow {
  id: number;
  topic: string;
  tenant_id: string | null;
  reason: string;
  error: string;
  /** Null only for rows written before 015 and not yet classified (lifecycle/prepare.ts classifies them). */
  error_class: string | null;
  kafka_partition: number | null;
  kafka_offset: number | null;
  received_at: Date;
}

/**
 * The DLQ's append lock. The one statement that takes event_dlq ids (INSERT_ENTRIES) takes its shared form first (the
 * MATERIALIZED CTE is the outer side of the join that yields the rows, so it runs before any id is drawn) and holds it
 * to its transaction's end; a bulk action's or a repair's plan reads the newest id holding its exclusive form (pinDlq)
 * and counts up to it. So every id at or below a pin belongs to a transaction that had ended: ids come from a sequence
 * in the order transactions draw them, not in the order they commit, and without the lock a dead letter below a pin
 * could still commit after it and be acted on or not depending on where the action's cursor was (attack60).
 */
const DLQ_APPEND_LOCK = 'event_dlq:append';

const INSERT_ENTRIES = `
  WITH appending AS MATERIALIZED (SELECT ${sharedLockSql(DLQ_APPEND_LOCK)})
  INSERT INTO event_dlq (topic, tenant_id, payload, raw_value, error, reason, kafka_partition, kafka_offset, kafka_key,
                         raw_bytes, kafka_key_bytes, kafka_headers, kafka_timestamp, content_hash, error_class)
  SELECT u.* FROM appending,
    unnest($1::text[], $2::text[], $3::jsonb[], $4::text[], $5::text[], $6::text[], $7::int[], $8::bigint[],
           $9::text[], $10::bytea[], $11::bytea[], $12::jsonb[], $13::timestamptz[], $14::bytea[], $15::text[]) AS u
  ON CONFLICT DO NOTHING
  RETURNING id, kafka_offset::text AS offset, content_hash`;

/** A dead letter written: which record (offset and hash) got which id. */
export interface InsertedDlqRow {
  id: number;
  offset: string | null;
  content_hash: Buffer | null;
}

/**
 * Appends dead letters in one statement, under the DLQ's append lock (DLQ_APPEND_LOCK). A record already
 * dead-lettered (same coordinates, same content hash) is not added twice and is absent from the result.
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

/** Dead letters written before error classes (015), a page at a time, oldest first. */
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
  discard_reason: string | null;
  /** The last bulk action that acted on the entry (journal/dead-letter.ts: once per entry per bulk action). */
  bulk_action_id: string | null;
}

const RECORD_COLUMNS = `id, topic, tenant_id, reason, error, error_class, kafka_partition, kafka_offset, kafka_key,
  received_at, payload, raw_value, status, attempts, last_error, next_attempt_at, resolved_at, resolved_event_id,
  discard_reason, bulk_action_id,
  raw_bytes, kafka_key_bytes, kafka_headers, kafka_timestamp, content_hash, payload::text AS payload_text`;

/** What the DLQ listing shows: no payload, raw value or bytes (a page of 1000 would carry them only to drop them). */
export type DlqListRow = Pick<
  DlqRecord,
  | keyof DlqRow
  | 'status'
  | 'attempts'
  | 'last_error'
  | 'next_attempt_at'
  | 'resolved_at'
  | 'resolved_event_id'
  | 'discard_reason'
>;

const LIST_COLUMNS = `id, topic, tenant_id, reason, error, error_class, kafka_partition, kafka_offset, received_at,
  status, attempts, last_error, next_attempt_at, resolved_at, resolved_event_id, discard_reason`;

/**
 * Which dead letters: GET /dlq's filter, a group of GET /dlq/groups, the set a bulk action works on, a repair's
 * selection. A new filter is one field here and one clause in dlqFilterClauses (and one in api/dlq-filter.ts).
 */
export interface DlqFilter {
  status?: DlqStatus;
  topic?: string;
  tenantId?: string;
  errorClass?: string;
  /** A UTC day, YYYY-MM-DD, of received_at (the day of a group). */
  day?: string;
  /** Exactly these entries (a repair by ids). */
  ids?: number[];
}

export interface DlqQuery extends DlqFilter {
  before?: number;
  limit: number;
}

/** The WHERE clauses of a DLQ filter (table alias `d`), their values appended to `values` as bind parameters. */
export function dlqFilterClauses(f: DlqFilter, values: unknown[]): string[] {
  const clauses: string[] = [];
  if (f.status) clauses.push(`d.status = $${values.push(f.status)}`);
  if (f.topic) clauses.push(`d.topic = $${values.push(f.topic)}`);
  if (f.tenantId) clauses.push(`d.tenant_id = $${values.push(f.tenantId)}`);
  if (f.errorClass) clauses.push(`d.error_class = $${values.push(f.errorClass)}`);
  if (f.day) {
    const day = `($${values.push(f.day)}::date::timestamp AT TIME ZONE 'UTC')`;
    clauses.push(`d.received_at >= ${day} AND d.received_at < ${day} + interval '1 day'`);
  }
  if (f.ids) clauses.push(`d.id = ANY($${values.push(f.ids)}::bigint[])`);
  return clauses;
}

const whereOf = (clauses: string[]) => (clauses.length ? `WHERE ${clauses.join(' AND ')}` : '');

/** Filtered DLQ listing, newest first, keyset-paginated on id. */
export async function listDlq(db: Queryable, q: DlqQuery): Promise<DlqListRow[]> {
  const values: unknown[] = [];
  const clauses = dlqFilterClauses(q, values);
  if (q.before !== undefined) clauses.push(`d.id < $${values.push(q.before)}`);
  const where = whereOf(clauses);
  const { rows } = await db.query<DlqListRow>(
    `SELECT ${LIST_COLUMNS} FROM event_dlq d ${where} ORDER BY id DESC LIMIT $${values.push(q.limit)}`,
    values,
  );
  return rows;
}

/**
 * How long a DLQ pin waits for the dead letters being written. Writers asking meanwhile (ingest's batches that
 * dead-letter a record) queue behind it, so it is also the longest ingest is held up by a pin: it holds the lock only
 * for that wait and an index-only read of the newest id, and counts after. A batch commits in milliseconds, and one
 * that does not (a frozen process) is ended by Postgres (journal/redelivery.ts BATCH_IDLE_TIMEOUT_MS) or, frozen in
 * a statement, by its partition's next writer.
 */
export const DLQ_PIN_WAIT_MS = 5_000;

/**
 * The DLQ's newest id as a pin (0 when empty): read holding the exclusive form of the DLQ's append lock, so every
 * transaction that had drawn an event_dlq id has ended, and every id at or below the pin is a committed entry or none,
 * forever; a dead letter written later has a higher id. A plan counts after the lock is released, up to the pin
 * (the same count as under the lock): a count, a scan under an operator's filter, would hold every writer up as long
 * (attack62). Fails with SQLSTATE 55P03 when the writers under way have not ended within DLQ_PIN_WAIT_MS (a retry
 * pins again).
 */
async function pinDlq(pool: Pool): Promise<number> {
  return withExclusiveLock(pool, DLQ_APPEND_LOCK, DLQ_PIN_WAIT_MS, async (client) => {
    const { rows } = await client.query<{ max: number | null }>('SELECT max(id) AS max FROM event_dlq');
    return rows[0].max ?? 0;
  });
}

/** countDlq as a repair's pin: the entries counted are exactly those up to maxId, for good (but for removals). */
export async function pinDlqSelection(pool: Pool, filter: DlqFilter): Promise<{ matched: number; maxId: number }> {
  return countDlq(pool, filter, await pinDlq(pool));
}

/** countDlqBulk as a bulk action's pin: its eligible entries up to max_id are fixed but for status changes. */
export async function pinDlqBulk(pool: Pool, f: DlqFilter, statuses: readonly DlqStatus[]): Promise<DlqBulkCount> {
  return countDlqBulk(pool, f, statuses, await pinDlq(pool));
}

/** The clauses of a DLQ filter (dlqFilterClauses), and with a pin, only entries at or below it. */
function countedClauses(f: DlqFilter, values: unknown[], upTo: number | undefined): string[] {
  const clauses = dlqFilterClauses(f, values);
  if (upTo !== undefined) clauses.push(`d.id <= $${values.push(upTo)}`);
  return clauses;
}

/**
 * How many entries a filter selects (up to `upTo` when given), and the newest id among them; unpinned (a dead letter
 * of a lower id may still commit): a repair pins with pinDlqSelection.
 */
export async function countDlq(
  db: Queryable,
  filter: DlqFilter,
  upTo?: number,
): Promise<{ matched: number; maxId: number }> {
  const values: unknown[] = [];
  const clauses = countedClauses(filter, values, upTo);
  const { rows } = await db.query<{ matched: number; max_id: number | null }>(
    `SELECT count(*)::int AS matched, max(d.id) AS max_id FROM event_dlq d ${whereOf(clauses)}`,
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
  clauses.push(`d.id > $${values.push(page.after)}`, `d.id <= $${values.push(page.maxId)}`);
  const { rows } = await db.query<DlqRecord>(
    `SELECT ${RECORD_COLUMNS} FROM event_dlq d ${whereOf(clauses)} ORDER BY d.id LIMIT $${values.push(page.limit)}`,
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

/** One group of GET /dlq/groups: dead letters of one error class, topic and UTC day. */
export interface DlqGroup {
  error_class: string | null;
  topic: string;
  day: string;
  count: number;
  by_status: Record<DlqStatus, number>;
  oldest: Date;
  newest: Date;
  /** The newest few ids of the group. */
  sample_ids: number[];
}

const SAMPLE_IDS = 5;

/** Dead letters counted per error class x topic x UTC day, largest groups first. */
export async function dlqGroups(db: Queryable, f: DlqFilter, limit: number): Promise<DlqGroup[]> {
  const values: unknown[] = [];
  const clauses = dlqFilterClauses(f, values);
  const byStatus = DLQ_STATUSES.map((s) => `'${s}', count(*) FILTER (WHERE d.status = '${s}')::int`).join(', ');
  // The samples are read per group through the (error_class, topic, received_at) index, under the same filter.
  const sameGroup = `d.error_class IS NOT DISTINCT FROM g.error_class AND d.topic = g.topic
     AND d.received_at >= g.day_start AND d.received_at < g.day_start + interval '1 day'`;
  const { rows } = await db.query<DlqGroup>(
    `SELECT g.error_class, g.topic, to_char(g.day_start AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, g.count,
            g.by_status, g.oldest, g.newest, sample.ids AS sample_ids
       FROM (SELECT d.error_class, d.topic, date_trunc('day', d.received_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                    AS day_start, count(*)::int AS count, json_build_object(${byStatus}) AS by_status,
                    min(d.received_at) AS oldest, max(d.received_at) AS newest
               FROM event_dlq d ${whereOf(clauses)}
              GROUP BY 1, 2, 3
              ORDER BY count DESC, newest DESC
              LIMIT $${values.push(limit)}) g,
            LATERAL (SELECT array_agg(id ORDER BY id DESC) AS ids
                       FROM (SELECT d.id FROM event_dlq d
                              WHERE ${[...clauses, sameGroup].join(' AND ')}
                              ORDER BY d.id DESC LIMIT ${SAMPLE_IDS}) picked) sample
      ORDER BY g.count DESC, g.newest DESC`,
    values,
  );
  return rows.map((r) => ({ ...r, sample_ids: r.sample_ids.map(Number) }));
}

/** What a bulk action would act on: every entry of the filter, by status, and those in the statuses it acts on. */
export interface DlqBulkCount {
  matched: number;
  eligible: number;
  by_status: Record<DlqStatus, number>;
  /**
   * The newest eligible id: a bulk action acts on no entry written after it was planned (pinned by pinDlqBulk: no
   * entry of a lower id commits later).
   */
  max_id: number | null;
}

/** What a bulk action would act on (up to `upTo` when given); unpinned: a bulk action pins with pinDlqBulk. */
export async function countDlqBulk(
  db: Queryable,
  f: DlqFilter,
  statuses: readonly DlqStatus[],
  upTo?: number,
): Promise<DlqBulkCount> {
  const values: unknown[] = [];
  const clauses = countedClauses(f, values, upTo);
  const eligible = `d.status = ANY($${values.push(statuses)}::text[])`;
  const byStatus = DLQ_STATUSES.map((s) => `'${s}', count(*) FILTER (WHERE d.status = '${s}')::int`).join(', ');
  const { rows } = await db.query<DlqBulkCount>(
    `SELECT count(*)::int AS matched, count(*) FILTER (WHERE ${eligible})::int AS eligible,
            json_build_object(${byStatus}) AS by_status, max(d.id) FILTER (WHERE ${eligible}) AS max_id
       FROM event_dlq d ${whereOf(clauses)}`,
    values,
  );
  const row = rows[0];
  return { ...row, max_id: row.max_id === null ? null : Number(row.max_id) };
}

export interface DlqBulkPageQuery {
  filter: DlqFilter;
  statuses: readonly DlqStatus[];
  afterId: number;
  maxId: number;
  bulkId: string;
  limit: number;
}

/** The next page of a bulk action, in id order: eligible entries it has not acted on yet. */
export async function dlqBulkPage(db: Queryable, q: DlqBulkPageQuery): Promise<number[]> {
  const values: unknown[] = [];
  const clauses = dlqFilterClauses(q.filter, values);
  clauses.push(
    `d.status = ANY($${values.push(q.statuses)}::text[])`,
    `d.id > $${values.push(q.afterId)}`,
    `d.id <= $${values.push(q.maxId)}`,
    `d.bulk_action_id IS DISTINCT FROM $${values.push(q.bulkId)}`,
  );
  const { rows } = await db.query<{ id: string }>(
    `SELECT d.id FROM event_dlq d ${whereOf(clauses)} ORDER BY d.id LIMIT $${values.push(q.limit)}`,
    values,
  );
  return rows.map((r) => Number(r.id));
}

export interface DlqStatusChange {
  ids: number[];
  /** Only entries still in one of these statuses change (another action may have moved them meanwhile). */
  from: readonly DlqStatus[];
  to: DlqStatus;
  bulkId: string;
  discardReason?: string;
  /** Workflow time: an entry put back to pending is due at once, with a fresh round of attempts. */
  now: Date;
}

/**
 * Moves entries to another status for a bulk action. Returns how many of `ids` the action has moved, now or in an
 * earlier attempt (an entry it already acted on is left alone and counted once).
 */
export async function changeDlqStatus(db: Queryable, c: DlqStatusChange): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    `WITH changed AS (
       UPDATE event_dlq
          SET status = $3, bulk_action_id = $4,
              discard_reason = CASE WHEN $3 = 'discarded' THEN $5 ELSE discard_reason END,
              next_attempt_at = CASE WHEN $3 = 'pending' THEN $6 ELSE next_attempt_at END,
              attempts = CASE WHEN $3 = 'pending' THEN 0 ELSE attempts END
        WHERE id = ANY($1::bigint[]) AND status = ANY($2::text[]) AND bulk_action_id IS DISTINCT FROM $4
        RETURNING id)
     SELECT ((SELECT count(*) FROM changed)
           + (SELECT count(*) FROM event_dlq WHERE id = ANY($1::bigint[]) AND bulk_action_id = $4))::int AS n`,
    [c.ids, c.from, c.to, c.bulkId, c.discardReason ?? null, c.now],
  );
  return rows[0].n;
}

/** Marks an entry as acted on by a bulk action (a retry: in the retry's own transaction). */
export async function markDlqBulkAction(db: Queryable, id: number, bulkId: string): Promise<void> {
  await db.query('UPDATE event_dlq SET bulk_action_id = $2 WHERE id = $1', [id, bulkId]);
}

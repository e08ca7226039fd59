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

/** The newest dead letters first (GET /dlq). */
export async function latestDlqEntries(db: Queryable, limit: number): Promise<DlqRow[]> {
  const { rows } = await db.query<DlqRow>(
    `SELECT id, topic, tenant_id, reason, error, kafka_partition, kafka_offset, received_at
       FROM event_dlq ORDER BY id DESC LIMIT $1`,
    [limit],
  );
  return rows;
}

/** Rows in the DLQ (the crm_events_dlq_size gauge). */
export async function countDlqEntries(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM event_dlq');
  return rows[0].n;
}

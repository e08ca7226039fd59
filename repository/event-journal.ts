import type { Queryable } from './queryable';

/** A record ready to be journaled; offsets travel as strings (Kafka int64). */
export interface NewJournalEntry {
  tenantId: string;
  topic: string;
  payloadJson: string;
  partition: number | null;
  offset: string | null;
  key: string | null;
  replayCount: number;
  replaySource: string | null;
}

export interface InsertedJournalRow {
  id: number;
  topic: string;
  kafka_partition: number | null;
  kafka_offset: number | null;
  received_at: Date;
}

export interface JournalSummary {
  id: number;
  tenant_id: string;
  topic: string;
  received_at: Date;
  replay_count: number;
  replay_source: string | null;
}

const INSERT_ENTRIES = `
  INSERT INTO event_journal
    (tenant_id, topic, payload, kafka_partition, kafka_offset, kafka_key, replay_count, replay_source)
  SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::int[], $5::bigint[], $6::text[], $7::int[], $8::text[])
  ON CONFLICT (topic, kafka_partition, kafka_offset) DO NOTHING
  RETURNING id, topic, kafka_partition, kafka_offset, received_at`;

/**
 * Journals entries in one statement. A record already journaled (same topic/partition/offset) is skipped and
 * absent from the result, which is how redeliveries stay exactly-once.
 */
export async function insertJournalEntries(db: Queryable, entries: NewJournalEntry[]): Promise<InsertedJournalRow[]> {
  if (entries.length === 0) return [];
  const { rows } = await db.query<InsertedJournalRow>(INSERT_ENTRIES, [
    entries.map((e) => e.tenantId),
    entries.map((e) => e.topic),
    entries.map((e) => e.payloadJson),
    entries.map((e) => e.partition),
    entries.map((e) => e.offset),
    entries.map((e) => e.key),
    entries.map((e) => e.replayCount),
    entries.map((e) => e.replaySource),
  ]);
  return rows;
}

const SUMMARY_COLUMNS = 'id, tenant_id, topic, received_at, replay_count, replay_source';

/** The newest journal rows, newest first (GET /events/latest). */
export async function latestEvents(db: Queryable, limit: number): Promise<JournalSummary[]> {
  const { rows } = await db.query<JournalSummary>(
    `SELECT ${SUMMARY_COLUMNS} FROM event_journal ORDER BY id DESC LIMIT $1`,
    [limit],
  );
  return rows;
}

import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import type { PoolClient } from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { copyTextLine } from './copy-text';
import { LINEAGE_FIELDS } from '../journal/kinds';
import type { JournalArchiveRow } from './journal-archive';
import { payloadFilterClause } from './payload-filter';
import type { Queryable } from './queryable';
import { sharedLockSql, withExclusiveLock, type Pool } from '../shared/db';
import { sameAsLegacy, type StoredRecord } from './stored-records';

export type { StoredRecord } from './stored-records';

/** A record ready to be journaled. */
export interface NewJournalEntry extends StoredRecord {
  tenantId: string;
  payloadJson: string;
  replayCount: number;
  replaySource: string | null;
}

export interface InsertedJournalRow {
  id: number;
  topic: string;
  kafka_partition: number | null;
  kafka_offset: number | null;
  content_hash: Buffer | null;
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

/**
 * The journal's append lock. Every statement that takes journal ids takes its shared form first, in the same statement
 * (`appending` below: the CTE is the outer side of the join that yields the rows, so it runs before any id is drawn),
 * and holds it to its transaction's end; pinJournal reads the newest id holding its exclusive form. So every id at or
 * below a pin belongs to a transaction that had ended: ids come from a sequence in the order transactions draw them,
 * not in the order they commit, and without the lock a row below a pin could still commit after it (attack54).
 */
const JOURNAL_APPEND_LOCK = 'event_journal:append';
const APPENDING = `appending AS MATERIALIZED (SELECT ${sharedLockSql(JOURNAL_APPEND_LOCK)})`;

const INSERT_ENTRIES = `
  WITH ${APPENDING}
  INSERT INTO event_journal
    (tenant_id, topic, payload, kafka_partition, kafka_offset, kafka_key, replay_count, replay_source,
     kafka_key_bytes, kafka_headers, kafka_timestamp, content_hash)
  SELECT u.* FROM appending,
    unnest($1::text[], $2::text[], $3::jsonb[], $4::int[], $5::bigint[], $6::text[], $7::int[], $8::text[],
           $9::bytea[], $10::jsonb[], $11::timestamptz[], $12::bytea[]) AS u
  ON CONFLICT DO NOTHING
  RETURNING id, topic, kafka_partition, kafka_offset, content_hash, received_at`;

/**
 * Journals entries in one statement, under the journal's append lock (JOURNAL_APPEND_LOCK). A record already
 * journaled is skipped and absent from the result: the same record at the same coordinates (a redelivery) or the same
 * replay of the same event (a republished replay page).
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
    entries.map((e) => e.keyBytes),
    entries.map((e) => e.headersJson),
    entries.map((e) => e.timestamp),
    entries.map((e) => e.contentHash),
  ]);
  return rows;
}

const COPY_ENTRIES = `
  COPY event_journal
    (id, received_at, tenant_id, topic, payload, kafka_partition, kafka_offset, kafka_key, replay_count, replay_source,
     kafka_key_bytes, kafka_headers, kafka_timestamp, content_hash)
  FROM STDIN`;

/**
 * Journals entries with COPY, the fastest way into Postgres, inside the caller's transaction. COPY has no ON CONFLICT:
 * a record already journaled makes the whole statement fail (unique violation, SQLSTATE 23505), and so does any row
 * Postgres refuses; the caller then rolls back and uses insertJournalEntries. Ids come from the table's sequence,
 * drawn under the journal's append lock (JOURNAL_APPEND_LOCK) in the same statement, and received_at is the
 * transaction's now(), exactly what the column defaults would give.
 */
export async function copyJournalEntries(
  client: PoolClient,
  entries: NewJournalEntry[],
): Promise<InsertedJournalRow[]> {
  if (entries.length === 0) return [];
  const { rows } = await client.query<{ ids: string[]; received_at: Date; now: string }>(
    `WITH ${APPENDING}
     SELECT array(SELECT nextval('event_journal_id_seq') FROM appending, generate_series(1, $1))::text[] AS ids,
            now() AS received_at, now()::text AS now`,
    [entries.length],
  );
  const { ids, received_at, now } = rows[0];
  let text = '';
  entries.forEach((e, i) => {
    text += copyTextLine([
      ids[i],
      now,
      e.tenantId,
      e.topic,
      e.payloadJson,
      e.partition,
      e.offset,
      e.key,
      e.replayCount,
      e.replaySource,
      e.keyBytes,
      e.headersJson,
      e.timestamp === null ? null : e.timestamp.toISOString(),
      e.contentHash,
    ]);
  });
  await pipeline(Readable.from([text]), client.query(copyFrom(COPY_ENTRIES)));
  return entries.map((e, i) => ({
    id: Number(ids[i]),
    topic: e.topic,
    kafka_partition: e.partition,
    kafka_offset: e.offset === null ? null : Number(e.offset),
    content_hash: e.contentHash,
    received_at,
  }));
}

/**
 * Of these records, the offsets where a row journaled before content hashes existed holds an equal payload (as
 * jsonb): those are redeliveries. A candidate whose text Postgres cannot read as jsonb equals nothing. Runs inside
 * a transaction (savepoints).
 */
export async function legacyJournalMatches(
  db: PoolClient,
  topic: string,
  partition: number,
  candidates: Array<{ offset: string; payloadJson: string }>,
): Promise<Set<string>> {
  const matches = new Set<string>();
  for (const { offset, payloadJson } of candidates) {
    const same = await sameAsLegacy(
      db,
      `SELECT payload = $4::jsonb AS same FROM event_journal
        WHERE topic = $1 AND kafka_partition = $2 AND kafka_offset = $3 AND content_hash IS NULL`,
      [topic, partition, offset, payloadJson],
    );
    if (same) matches.add(offset);
  }
  return matches;
}

/** A replay's copy of one event: the replay id and the journal id it was replayed from (lineage). */
export interface ReplayCopy {
  replayId: string;
  replayedFrom: number;
}

/**
 * Of these replay copies, the ones already journaled (as "replayId/replayedFrom"): a replay republishes an event once
 * per (replay, event), but an activity retry can publish it again, and that copy is not journaled twice. One probe
 * of the lineage index (idx_event_journal_replay_copy) per partition.
 */
export async function journaledReplayCopies(db: Queryable, copies: ReplayCopy[]): Promise<Set<string>> {
  if (copies.length === 0) return new Set();
  const { rows } = await db.query<{ copy: string }>(
    `SELECT DISTINCT k.replay_id || '/' || k.replayed_from AS copy
       FROM unnest($1::text[], $2::text[]) AS k(replay_id, replayed_from)
       JOIN event_journal e
         ON e.payload->>'_replay_id' = k.replay_id AND e.payload->>'_replayed_from_event_id' = k.replayed_from
        AND e.replay_count > 0 AND e.payload ? '_replay_id'`,
    [copies.map((c) => c.replayId), copies.map((c) => String(c.replayedFrom))],
  );
  return new Set(rows.map((r) => r.copy));
}

const SUMMARY_COLUMNS = 'id, tenant_id, topic, received_at, replay_count, replay_source';

/** A full journal row, as replay reads it. */
export interface JournalRow extends JournalSummary {
  payload: Record<string, unknown>;
  kafka_partition: number | null;
  kafka_offset: number | null;
  kafka_key: string | null;
}

const ROW_COLUMNS = `${SUMMARY_COLUMNS}, payload, kafka_partition, kafka_offset, kafka_key`;

export async function getEvent(db: Queryable, id: number): Promise<JournalRow | undefined> {
  const { rows } = await db.query<JournalRow>(`SELECT ${ROW_COLUMNS} FROM event_journal WHERE id = $1`, [id]);
  return rows[0];
}

/** A journal row as a replay reads it: the payload as Postgres prints it, without lineage, and the record's bytes. */
export interface ReplayRow {
  id: number;
  tenant_id: string;
  topic: string;
  replay_count: number;
  /** (payload - lineage fields)::text: numbers keep every digit; never parsed in Node. */
  payload_text: string;
  kafka_key: string | null;
  kafka_key_bytes: Buffer | null;
  kafka_headers: unknown;
  /** Journaled before migration 007: key bytes and headers were not kept. */
  legacy: boolean;
}

/**
 * The text a replay sends for a jsonb payload: without lineage, as Postgres prints it. One expression for journal
 * rows and archived ones, so that both send the same bytes.
 */
const replayPayloadText = (jsonb: string) => `(${jsonb} - '{${LINEAGE_FIELDS.join(',')}}'::text[])::text`;

const REPLAY_COLUMNS = `id, tenant_id, topic, replay_count,
  ${replayPayloadText('payload')} AS payload_text, kafka_key, kafka_key_bytes, kafka_headers,
  content_hash IS NULL AS legacy`;

/** Replay rows for the given ids, in id order; ids that do not exist are simply absent. */
export async function replayRows(db: Queryable, ids: number[]): Promise<ReplayRow[]> {
  const { rows } = await db.query<ReplayRow>(
    `SELECT ${REPLAY_COLUMNS} FROM event_journal WHERE id = ANY($1::bigint[]) ORDER BY id`,
    [ids],
  );
  return rows;
}

/**
 * The replay rows of archived journal rows (archive/ keeps each column as lossless text), in the order given: the
 * payload goes through the same expression as a journal row's (replayPayloadText), so a row replayed from the archive
 * sends the bytes it would have sent from the journal. Nothing is parsed in Node but the headers (names and base64).
 */
export async function archivedReplayRows(db: Queryable, rows: JournalArchiveRow[]): Promise<ReplayRow[]> {
  if (rows.length === 0) return [];
  const { rows: texts } = await db.query<{ payload_text: string }>(
    `SELECT ${replayPayloadText('p::jsonb')} AS payload_text FROM unnest($1::text[]) WITH ORDINALITY AS u(p, n)
      ORDER BY n`,
    [rows.map((row) => row.payload)],
  );
  return rows.map((row, i) => ({
    id: row.id,
    tenant_id: row.tenant_id,
    topic: row.topic,
    replay_count: row.replay_count,
    payload_text: texts[i].payload_text,
    kafka_key: row.kafka_key,
    kafka_key_bytes: row.kafka_key_bytes === null ? null : Buffer.from(row.kafka_key_bytes, 'base64'),
    kafka_headers: row.kafka_headers === null ? null : (JSON.parse(row.kafka_headers) as unknown),
    legacy: row.content_hash === null,
  }));
}

/**
 * Of these archived rows, the ids the journal still holds (an archiving that stopped before its drop). Bounded by the
 * rows' received_at, which a row keeps in the archive, so that only the partitions they came from are probed.
 */
export async function journaledIds(
  db: Queryable,
  rows: Array<Pick<JournalArchiveRow, 'id' | 'received_at'>>,
): Promise<Set<number>> {
  if (rows.length === 0) return new Set();
  let from = rows[0].received_at;
  let to = from;
  for (const { received_at } of rows) {
    if (received_at < from) from = received_at;
    if (received_at > to) to = received_at;
  }
  const { rows: found } = await db.query<{ id: number }>(
    `SELECT id FROM event_journal WHERE id = ANY($1::bigint[]) AND received_at BETWEEN $2 AND $3`,
    [rows.map((row) => row.id), from, to],
  );
  return new Set(found.map((row) => Number(row.id)));
}

/**
 * What a range replay selects. Bounds are [start, end) on received_at; maxId pins the range when it starts
 * (pinJournal: every row at or below it had committed, so the rows it selects are fixed but for removals).
 */
export interface RangeFilter {
  start: string;
  end: string;
  tenantId?: string;
  topic?: string;
  includeReplays?: boolean;
  /** A JSONPath predicate on the payload (validated beforehand: repository/payload-filter.ts). */
  payloadFilter?: string;
  maxId: number;
  /** Only the rows of one key shard of a sharded per_key replay (keyShardOf). */
  keyShard?: { index: number; of: number };
}

/**
 * The key shard of a row among `of` (a SQL expression, `of` its parameter): a stable hash of the Kafka key (the first
 * 32 bits of its MD5, a function Postgres defines the same everywhere), so that every event of a key falls in one
 * shard; keyless rows have no order to keep and are spread by id.
 */
const keyShardOf = (of: string) =>
  `(CASE WHEN kafka_key IS NULL THEN id % ${of} ELSE ('x' || left(md5(kafka_key), 8))::bit(32)::bigint % ${of} END)`;

function rangeWhere(filter: RangeFilter, values: unknown[]): string {
  values.push(filter.start, filter.end, filter.maxId);
  const clauses = ['received_at >= $1', 'received_at < $2', 'id <= $3'];
  if (filter.tenantId !== undefined) clauses.push(`tenant_id = $${values.push(filter.tenantId)}`);
  if (filter.topic !== undefined) clauses.push(`topic = $${values.push(filter.topic)}`);
  if (!filter.includeReplays) clauses.push('replay_count = 0');
  if (filter.payloadFilter !== undefined) clauses.push(payloadFilterClause(filter.payloadFilter, values));
  if (filter.keyShard) {
    const of = `$${values.push(filter.keyShard.of)}::int`;
    clauses.push(`${keyShardOf(of)} = $${values.push(filter.keyShard.index)}`);
  }
  return clauses.join(' AND ');
}

/** A contiguous part of a range: its rows with after < id <= upTo, `events` of them matching. */
export interface RangeIdShard {
  after: number;
  upTo: number;
  events: number;
}

/**
 * The range cut into at most `shards` contiguous id ranges holding about as many matching rows each (fewer when it
 * holds fewer rows); the last ends at the range's pinned maxId.
 */
export async function rangeIdShards(db: Queryable, filter: RangeFilter, shards: number): Promise<RangeIdShard[]> {
  const values: unknown[] = [];
  const where = rangeWhere(filter, values);
  const { rows } = await db.query<{ up_to: string; events: number }>(
    `SELECT max(id) AS up_to, count(*)::int AS events
       FROM (SELECT id, ntile($${values.push(shards)}::int) OVER (ORDER BY id) AS shard FROM event_journal WHERE ${where}) s
      GROUP BY shard ORDER BY shard`,
    values,
  );
  return rows.map((row, i) => ({
    after: i === 0 ? 0 : Number(rows[i - 1].up_to),
    upTo: i === rows.length - 1 ? filter.maxId : Number(row.up_to),
    events: row.events,
  }));
}

/** How many matching rows of the range fall in each of `shards` key shards (index = shard). */
export async function rangeKeyShardCounts(db: Queryable, filter: RangeFilter, shards: number): Promise<number[]> {
  const values: unknown[] = [];
  const where = rangeWhere(filter, values);
  const of = `$${values.push(shards)}::int`;
  const { rows } = await db.query<{ shard: string; events: number }>(
    `SELECT ${keyShardOf(of)} AS shard, count(*)::int AS events FROM event_journal WHERE ${where} GROUP BY 1`,
    values,
  );
  const counts = new Array<number>(shards).fill(0);
  for (const row of rows) counts[Number(row.shard)] = row.events;
  return counts;
}

/** One keyset page of a range: rows with id > cursor, in id order. */
export async function rangePage(
  db: Queryable,
  filter: RangeFilter,
  cursor: number,
  limit: number,
): Promise<ReplayRow[]> {
  const values: unknown[] = [];
  const where = rangeWhere(filter, values);
  const { rows } = await db.query<ReplayRow>(
    `SELECT ${REPLAY_COLUMNS} FROM event_journal WHERE ${where} AND id > $${values.push(cursor)}
      ORDER BY id LIMIT $${values.push(limit)}`,
    values,
  );
  return rows;
}

export interface RangeCount {
  topic: string;
  tenant_id: string;
  events: number;
}

/** How many rows a range holds, by topic and tenant (dry runs and progress totals). */
export async function countRange(db: Queryable, filter: RangeFilter): Promise<RangeCount[]> {
  const values: unknown[] = [];
  const { rows } = await db.query<RangeCount>(
    `SELECT topic, tenant_id, count(*)::int AS events FROM event_journal WHERE ${rangeWhere(filter, values)}
      GROUP BY topic, tenant_id ORDER BY topic, tenant_id`,
    values,
  );
  return rows;
}

/** A matching row as a dry run shows it. */
export interface RangeSampleRow extends JournalSummary {
  payload: Record<string, unknown>;
}

/** The first `limit` rows of a range in id order, with their payloads (the sample a dry run shows). */
export async function rangeSample(db: Queryable, filter: RangeFilter, limit: number): Promise<RangeSampleRow[]> {
  const values: unknown[] = [];
  const { rows } = await db.query<RangeSampleRow>(
    `SELECT ${SUMMARY_COLUMNS}, payload FROM event_journal WHERE ${rangeWhere(filter, values)}
      ORDER BY id LIMIT $${values.push(limit)}`,
    values,
  );
  return rows;
}

/**
 * How long pinJournal waits for the appends under way. Appends asking meanwhile queue behind it, so it is also the
 * longest ingest is held up by a pin; a batch commits in milliseconds, and one that does not (a frozen process) is
 * ended by Postgres (journal/redelivery.ts BATCH_IDLE_TIMEOUT_MS) or by its partition's next writer. Every other
 * transaction that journals (a DLQ retry or repair, a repair's preview) has the same idle bound (journal/append.ts
 * withJournaling, attack61).
 */
export const JOURNAL_PIN_WAIT_MS = 5_000;

/**
 * The journal's newest id as a pin (0 when empty): read holding the exclusive form of the journal's append lock, so
 * every transaction that had drawn an id has ended, and every id at or below the pin is a committed row or none,
 * forever; a transaction drawing ids after it draws higher ones. Fails with SQLSTATE 55P03 when the appends under way
 * have not ended within JOURNAL_PIN_WAIT_MS (a retry pins again).
 */
export async function pinJournal(pool: Pool): Promise<number> {
  return withExclusiveLock(pool, JOURNAL_APPEND_LOCK, JOURNAL_PIN_WAIT_MS, (client) => maxEventId(client));
}

/** The newest journal id (0 when empty); rows of ids below it may still commit (pinJournal waits for them). */
export async function maxEventId(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ max: number | null }>('SELECT max(id) AS max FROM event_journal');
  return rows[0].max ?? 0;
}

/** What GET /events and its export filter on. */
export interface EventFilter {
  tenantId?: string;
  topic?: string;
  since?: string;
  until?: string;
  replayed?: boolean;
  /** A JSONPath predicate on the payload (validated beforehand: repository/payload-filter.ts). */
  payloadFilter?: string;
}

export interface EventQuery extends EventFilter {
  /** Keyset cursor: rows with id below it (pages go newest first). */
  before?: number;
  limit: number;
}

/** The WHERE clauses of an event filter, its values appended to `values` as bind parameters. */
export function eventFilterClauses(filter: EventFilter, values: unknown[]): string[] {
  const clauses: string[] = [];
  if (filter.tenantId !== undefined) clauses.push(`tenant_id = $${values.push(filter.tenantId)}`);
  if (filter.topic !== undefined) clauses.push(`topic = $${values.push(filter.topic)}`);
  if (filter.since !== undefined) clauses.push(`received_at >= $${values.push(filter.since)}`);
  if (filter.until !== undefined) clauses.push(`received_at < $${values.push(filter.until)}`);
  if (filter.replayed !== undefined) clauses.push(filter.replayed ? 'replay_count > 0' : 'replay_count = 0');
  if (filter.payloadFilter !== undefined) clauses.push(payloadFilterClause(filter.payloadFilter, values));
  return clauses;
}

/** Filtered journal listing, newest first, keyset-paginated on id. */
export async function listEvents(db: Queryable, query: EventQuery): Promise<JournalSummary[]> {
  const values: unknown[] = [];
  const clauses = eventFilterClauses(query, values);
  if (query.before !== undefined) clauses.push(`id < $${values.push(query.before)}`);
  const where = clauses.length ? `WHERE ${clauses.join(' AND ')}` : '';
  const { rows } = await db.query<JournalSummary>(
    `SELECT ${SUMMARY_COLUMNS} FROM event_journal ${where} ORDER BY id DESC LIMIT $${values.push(query.limit)}`,
    values,
  );
  return rows;
}

/** Journal rows that are replays of the given event (lineage). */
export async function replaysOf(db: Queryable, id: number): Promise<JournalSummary[]> {
  const { rows } = await db.query<JournalSummary>(
    `SELECT ${SUMMARY_COLUMNS} FROM event_journal
      WHERE replay_count > 0 AND payload->>'_replayed_from_event_id' = $1 ORDER BY id`,
    [String(id)],
  );
  return rows;
}

/** Channel on which the journal announces committed rows (payload: the highest new id). */
export const JOURNAL_CHANNEL = 'event_journal';

/** Announces new rows to listeners; delivered when the surrounding transaction commits, never before. */
export async function notifyJournaled(db: Queryable, maxId: number): Promise<void> {
  await db.query('SELECT pg_notify($1, $2)', [JOURNAL_CHANNEL, String(maxId)]);
}

export interface StreamFilter {
  tenantId?: string;
  topic?: string;
}

/**
 * Full rows after an id, oldest first (the live stream catches up from here): at most `limit` rows, and at most
 * `maxBytes` of payload text after the first row (one row always comes, however large).
 */
export async function eventsAfter(
  db: Queryable,
  afterId: number,
  filter: StreamFilter,
  limit: number,
  maxBytes = Number.MAX_SAFE_INTEGER,
  /** The highest id to read (the live feed's last read id, for a catch-up handing over to it); none: no bound. */
  upTo?: number,
): Promise<JournalRow[]> {
  const values: unknown[] = [afterId];
  const clauses = ['id > $1'];
  if (upTo !== undefined) clauses.push(`id <= $${values.push(upTo)}`);
  if (filter.tenantId !== undefined) clauses.push(`tenant_id = $${values.push(filter.tenantId)}`);
  if (filter.topic !== undefined) clauses.push(`topic = $${values.push(filter.topic)}`);
  const { rows } = await db.query<JournalRow & { running_bytes?: string }>(
    `SELECT ${ROW_COLUMNS} FROM (
       SELECT ${ROW_COLUMNS}, sum(octet_length(payload::text)) OVER (ORDER BY id) AS running_bytes,
              row_number() OVER (ORDER BY id) AS n
         FROM (
           SELECT ${ROW_COLUMNS} FROM event_journal WHERE ${clauses.join(' AND ')} ORDER BY id LIMIT $${values.push(limit)}
         ) AS page
     ) AS sized WHERE n = 1 OR running_bytes <= $${values.push(maxBytes)} ORDER BY id`,
    values,
  );
  return rows;
}

export interface IdRange {
  from: number;
  to: number;
}

/** Full rows whose ids fall in any of the ranges (inclusive), oldest first. */
export async function eventsInRanges(db: Queryable, ranges: IdRange[]): Promise<JournalRow[]> {
  if (ranges.length === 0) return [];
  const { rows } = await db.query<JournalRow>(
    `SELECT e.* FROM unnest($1::bigint[], $2::bigint[]) AS r(lo, hi)
       CROSS JOIN LATERAL (SELECT ${ROW_COLUMNS} FROM event_journal WHERE id BETWEEN r.lo AND r.hi) AS e
      ORDER BY e.id`,
    [ranges.map((r) => r.from), ranges.map((r) => r.to)],
  );
  return rows;
}

/** The journal row holding this record (coordinates and content hash; a NULL hash matches rows from before 007). */
export async function journalIdOf(
  db: Queryable,
  record: Pick<StoredRecord, 'topic' | 'partition' | 'offset' | 'contentHash'>,
): Promise<number | undefined> {
  const { rows } = await db.query<{ id: number }>(
    `SELECT id FROM event_journal
      WHERE topic = $1 AND kafka_partition = $2 AND kafka_offset = $3 AND content_hash IS NOT DISTINCT FROM $4
      ORDER BY id LIMIT 1`,
    [record.topic, record.partition, record.offset, record.contentHash],
  );
  return rows[0]?.id;
}

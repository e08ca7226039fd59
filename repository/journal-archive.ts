import type { PoolClient } from 'pg';
import { escapeIdentifier } from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { copyTextLine } from './copy-text';
import { DEFAULT_CURSOR_BATCH, streamRows } from './cursor';

/**
 * One event_journal row with every column in a lossless text form: what an archive segment keeps, one per line.
 * Nothing is parsed in Node, so a payload's numbers keep every digit and timestamps keep their microseconds.
 */
export interface JournalArchiveRow {
  id: number;
  tenant_id: string;
  topic: string;
  /** payload::text, the jsonb as Postgres prints it. */
  payload: string;
  /** ISO 8601 in UTC with microseconds (2026-01-31T23:59:59.123456Z), so text order is time order. */
  received_at: string;
  kafka_partition: number | null;
  /** Kafka int64, as text. */
  kafka_offset: string | null;
  kafka_key: string | null;
  /** The key's bytes, base64. */
  kafka_key_bytes: string | null;
  /** kafka_headers::text ([[name, value base64 | null], ...]). */
  kafka_headers: string | null;
  /** Like received_at. */
  kafka_timestamp: string | null;
  /** The content hash, hex. */
  content_hash: string | null;
  replay_count: number;
  replay_source: string | null;
}

const utc = (column: string) => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

// encode(…, 'base64') breaks lines every 76 characters; the archive keeps base64 on one line.
const ARCHIVE_COLUMNS = `id, tenant_id, topic, payload::text AS payload, ${utc('received_at')} AS received_at,
  kafka_partition, kafka_offset::text AS kafka_offset, kafka_key,
  translate(encode(kafka_key_bytes, 'base64'), E'\\n', '') AS kafka_key_bytes, kafka_headers::text AS kafka_headers,
  ${utc('kafka_timestamp')} AS kafka_timestamp, encode(content_hash, 'hex') AS content_hash, replay_count, replay_source`;

/** Which rows of which table (event_journal, or one of its partitions) to read. */
export interface JournalArchiveSource {
  /** Table or partition name (quoted as an identifier). */
  table: string;
  /** Optional window on received_at, [from, before). */
  receivedFrom?: string;
  receivedBefore?: string;
  /** Only this topic's rows (retention per topic). */
  topic?: string;
  /** Rows fetched per round trip. */
  batchSize?: number;
}

/** Every row of the source in id order, in archive form, streamed through a cursor (see streamRows). */
export async function* journalArchiveRows(
  client: PoolClient,
  source: JournalArchiveSource,
): AsyncGenerator<JournalArchiveRow> {
  const values: unknown[] = [];
  const where: string[] = [];
  if (source.receivedFrom !== undefined) where.push(`received_at >= $${values.push(source.receivedFrom)}`);
  if (source.receivedBefore !== undefined) where.push(`received_at < $${values.push(source.receivedBefore)}`);
  if (source.topic !== undefined) where.push(`topic = $${values.push(source.topic)}`);
  const text = `SELECT ${ARCHIVE_COLUMNS} FROM ${escapeIdentifier(source.table)}
    ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id`;
  for await (const row of streamRows<JournalArchiveRow>(
    client,
    text,
    values,
    source.batchSize ?? DEFAULT_CURSOR_BATCH,
  )) {
    // bigint: a number where shared/db.ts set its parser, text elsewhere; the archive row always has a number.
    row.id = Number(row.id);
    yield row;
  }
}

const COLUMNS = [
  'id',
  'tenant_id',
  'topic',
  'payload',
  'received_at',
  'kafka_partition',
  'kafka_offset',
  'kafka_key',
  'kafka_key_bytes',
  'kafka_headers',
  'kafka_timestamp',
  'content_hash',
  'replay_count',
  'replay_source',
] as const;

// Lines are sent to COPY in chunks of about this many characters.
const COPY_CHUNK = 64 * 1024;

/**
 * Restores archived rows into a table with the journal's columns (event_journal, a partition, or a scratch copy made
 * with CREATE TABLE … (LIKE event_journal)) with one streamed COPY, ids and times as archived, inside the caller's
 * transaction. Rows whose id is already there fail the whole COPY (unique violation): restore into an empty table.
 * Returns the number of rows copied.
 */
export async function copyArchiveRows(
  client: PoolClient,
  table: string,
  rows: AsyncIterable<JournalArchiveRow>,
): Promise<number> {
  let count = 0;
  async function* lines(): AsyncGenerator<string> {
    let pending = '';
    for await (const row of rows) {
      count++;
      pending += copyTextLine([
        row.id,
        row.tenant_id,
        row.topic,
        row.payload,
        row.received_at,
        row.kafka_partition,
        row.kafka_offset,
        row.kafka_key,
        row.kafka_key_bytes === null ? null : Buffer.from(row.kafka_key_bytes, 'base64'),
        row.kafka_headers,
        row.kafka_timestamp,
        row.content_hash === null ? null : Buffer.from(row.content_hash, 'hex'),
        row.replay_count,
        row.replay_source,
      ]);
      if (pending.length >= COPY_CHUNK) {
        yield pending;
        pending = '';
      }
    }
    if (pending) yield pending;
  }
  const copy = `COPY ${escapeIdentifier(table)} (${COLUMNS.join(', ')}) FROM STDIN`;
  await pipeline(Readable.from(lines()), client.query(copyFrom(copy)));
  return count;
}

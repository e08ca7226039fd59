import type { JournalArchiveRow } from '../repository/journal-archive';
import { ArchiveFormatError } from './errors';

/** One journal row as a segment keeps it (every column, lossless text forms): see repository/journal-archive.ts. */
export type ArchiveRow = JournalArchiveRow;

/**
 * One NDJSON line (with its '\n') for a row. Keys in column order whatever the object's order, so the same rows give
 * the same bytes (and checksums). payload and kafka_headers are JSON strings holding the jsonb text: no JSON reader
 * of the file can round a number, and `jq -r .payload` gives the text back.
 */
export function encodeRow(row: ArchiveRow): string {
  return (
    JSON.stringify({
      id: row.id,
      tenant_id: row.tenant_id,
      topic: row.topic,
      payload: row.payload,
      received_at: row.received_at,
      kafka_partition: row.kafka_partition,
      kafka_offset: row.kafka_offset,
      kafka_key: row.kafka_key,
      kafka_key_bytes: row.kafka_key_bytes,
      kafka_headers: row.kafka_headers,
      kafka_timestamp: row.kafka_timestamp,
      content_hash: row.content_hash,
      replay_count: row.replay_count,
      replay_source: row.replay_source,
    }) + '\n'
  );
}

type FieldKind = 'string' | 'string?' | 'int' | 'int?';

const FIELDS: Record<keyof ArchiveRow, FieldKind> = {
  id: 'int',
  tenant_id: 'string',
  topic: 'string',
  payload: 'string',
  received_at: 'string',
  kafka_partition: 'int?',
  kafka_offset: 'string?',
  kafka_key: 'string?',
  kafka_key_bytes: 'string?',
  kafka_headers: 'string?',
  kafka_timestamp: 'string?',
  content_hash: 'string?',
  replay_count: 'int',
  replay_source: 'string?',
};

function fits(value: unknown, kind: FieldKind): boolean {
  if (value === null) return kind.endsWith('?');
  return kind.startsWith('int') ? Number.isSafeInteger(value) : typeof value === 'string';
}

/** The first field of a would-be row that is missing or of the wrong type, or undefined when it is a valid row. */
export function badField(value: Record<string, unknown>): string | undefined {
  return Object.entries(FIELDS).find(([field, kind]) => !fits(value[field], kind))?.[0];
}

/** Parses one line (without its '\n'); ArchiveFormatError names the segment, the line and the field. */
export function decodeRow(line: string, segment: string, lineNumber: number): ArchiveRow {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (err) {
    throw new ArchiveFormatError(segment, `line ${lineNumber} is not JSON`, { cause: err });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ArchiveFormatError(segment, `line ${lineNumber} is not a JSON object`);
  }
  const bad = badField(value as Record<string, unknown>);
  if (bad) throw new ArchiveFormatError(segment, `line ${lineNumber}: bad or missing ${bad}`);
  return value as ArchiveRow;
}

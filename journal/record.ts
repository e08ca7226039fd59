import { hash } from 'node:crypto';
import type { NewDlqEntry } from '../repository/event-dlq';
import type { NewJournalEntry, StoredRecord } from '../repository/event-journal';
import { TENANT_FIELDS, type RejectReason } from './kinds';
import { verifiedLineage, type LineageKey, type VerifiedLineage } from './lineage';
import { TENANT_HEADER, encodeHeaders, headerList, headerValue, type HeaderList, type RecordHeaders } from './headers';
import { sanitizeText } from './outage';

/** The parts of a consumed Kafka record the journal reads. */
export interface KafkaRecord {
  topic: string;
  partition: number;
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  headers?: RecordHeaders;
  /** Record timestamp in ms since the epoch, as kafkajs gives it (a string). */
  timestamp?: string;
}

export interface Accepted {
  ok: true;
  entry: NewJournalEntry;
  /** The value as consumed (kept if the journal refuses the entry and it goes to the DLQ). */
  valueBytes: Buffer;
  eventType: string;
  /** Verified lineage (x-replay-proof checked); null for an original. */
  lineage: VerifiedLineage | null;
}

export interface Rejected {
  ok: false;
  reason: RejectReason;
  dlq: NewDlqEntry;
}

export type ParsedRecord = Accepted | Rejected;

export interface ParseOptions {
  maxBytes: number;
  lineageKey: LineageKey;
}

const MAX_TENANT_LENGTH = 200;
// Control characters (NUL included: Postgres text cannot hold it) and lone surrogates make a tenant id unusable.
// eslint-disable-next-line no-control-regex -- control characters are exactly what this pattern is for
const BAD_TENANT = /[\u0000-\u001f\u007f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Turns one consumed Kafka record into a journal entry, or a DLQ entry with a precise error. Pure: no I/O, and never
 * throws: should the parser itself fail on some input (a bug), the record is dead-lettered as `parse_error` with what
 * was certainly readable (its bytes), so that no record can stop a partition. Both carry the record exactly as
 * consumed (key bytes, headers, timestamp, content hash).
 */
export function parseRecord(record: KafkaRecord, options: ParseOptions): ParsedRecord {
  try {
    return parse(record, options);
  } catch (err) {
    return {
      ok: false,
      reason: 'parse_error',
      dlq: {
        topic: record.topic,
        partition: record.partition,
        offset: record.offset,
        key: null,
        keyBytes: Buffer.isBuffer(record.key) ? record.key : null,
        headersJson: null,
        timestamp: null,
        contentHash: contentHash(
          Buffer.isBuffer(record.key) ? record.key : null,
          Buffer.isBuffer(record.value) ? record.value : null,
          null,
          [],
        ),
        tenantId: null,
        payloadJson: null,
        rawValue: null,
        rawBytes: Buffer.isBuffer(record.value) ? record.value : null,
        error: sanitizeText(`The record could not be parsed: ${err instanceof Error ? err.message : String(err)}`),
        reason: 'parse_error',
      },
    };
  }
}

function parse(record: KafkaRecord, options: ParseOptions): ParsedRecord {
  const headers = headerList(record.headers);
  const stored = storedRecord(record, headers);
  const { topic } = record;
  const reject = (reason: RejectReason, error: string, payloadJson: string | null = null): Rejected => ({
    ok: false,
    reason,
    dlq: {
      ...stored,
      tenantId: usableTenant(headerValue(headers, TENANT_HEADER)?.toString('utf8')) ?? null,
      payloadJson,
      rawValue: payloadJson === null && record.value ? textOrBase64(record.value) : null,
      rawBytes: record.value,
      error: sanitizeText(error),
      reason,
    },
  });

  const value = record.value;
  if (value === null || value.length === 0) {
    return reject('empty_value', 'Record has no value (tombstone or empty message); expected a JSON object');
  }
  if (value.length > options.maxBytes) {
    return reject(
      'too_large',
      `Record value is ${value.length} bytes, larger than INGEST_MAX_EVENT_BYTES=${options.maxBytes}`,
    );
  }
  let text: string;
  try {
    text = utf8.decode(value);
  } catch {
    return reject('invalid_utf8', 'Record value is not valid UTF-8 (raw bytes kept in raw_bytes)');
  }
  let payload: unknown;
  try {
    payload = JSON.parse(text);
  } catch (err) {
    return reject('invalid_json', `Record value is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
    const kind = payload === null ? 'null' : Array.isArray(payload) ? 'an array' : `a ${typeof payload}`;
    return reject('not_object', `Record value is JSON ${kind}; expected a JSON object`);
  }
  const fields = payload as Record<string, unknown>;
  const named = payloadTenant(fields) ?? headerValue(headers, TENANT_HEADER)?.toString('utf8').trim();
  if (!named) {
    return reject(
      'missing_tenant',
      `Event has no tenant: expected a non-empty ${TENANT_FIELDS.join(', ')} field or an ${TENANT_HEADER} header`,
      text,
    );
  }
  const tenantId = usableTenant(named);
  if (!tenantId) {
    return reject(
      'invalid_tenant',
      `Event tenant is not usable as an id: at most ${MAX_TENANT_LENGTH} characters, no control characters`,
      text,
    );
  }
  const lineage = verifiedLineage(fields, headers, value, options.lineageKey);
  return {
    ok: true,
    valueBytes: value,
    eventType: eventTypeOf(topic, fields),
    lineage,
    // Listed field by field: an object spread here costs more than the rest of the parse (it runs for every record).
    entry: {
      topic: stored.topic,
      partition: stored.partition,
      offset: stored.offset,
      key: stored.key,
      keyBytes: stored.keyBytes,
      headersJson: stored.headersJson,
      timestamp: stored.timestamp,
      contentHash: stored.contentHash,
      tenantId,
      payloadJson: text,
      replayCount: lineage?.count ?? 0,
      replaySource: lineage?.source ?? null,
    },
  };
}

/**
 * The record as consumed, for either table: coordinates, key (bytes, and as text for display), headers, timestamp,
 * and the content hash that tells a redelivery (same hash) from a coordinate reuse (different hash).
 */
export function storedRecord(record: KafkaRecord, headers: HeaderList): StoredRecord {
  return {
    topic: record.topic,
    partition: record.partition,
    offset: record.offset,
    key: record.key ? textOrBase64(record.key) : null,
    keyBytes: record.key,
    headersJson: encodeHeaders(headers),
    timestamp: recordTimestamp(record.timestamp),
    contentHash: contentHash(record.key, record.value, record.timestamp ?? null, headers),
  };
}

/**
 * SHA-256 over the record as consumed: key, value, timestamp, then each header name and value, every part
 * length-prefixed (a missing part is length 0xffffffff), so that no two different records share an encoding.
 */
export function contentHash(
  key: Buffer | null,
  value: Buffer | null,
  timestamp: string | null,
  headers: HeaderList,
): Buffer {
  const parts: Array<Buffer | null> = [key, value, timestamp === null ? null : Buffer.from(timestamp)];
  for (const [name, headerValue] of headers) parts.push(Buffer.from(name), headerValue);
  let length = 0;
  for (const part of parts) length += 4 + (part?.length ?? 0);
  // One buffer and one one-shot hash: this runs for every consumed record.
  const framed = Buffer.allocUnsafe(length);
  let at = 0;
  for (const part of parts) {
    at = framed.writeUInt32BE(part === null ? 0xffffffff : part.length, at);
    if (part) at += part.copy(framed, at);
  }
  return hash('sha256', framed, 'buffer');
}

function recordTimestamp(ms: string | undefined): Date | null {
  if (ms === undefined || !/^-?\d+$/.test(ms)) return null;
  const date = new Date(Number(ms));
  return Number.isNaN(date.getTime()) || Number(ms) < 0 ? null : date;
}

/** The tenant named in a payload field (tenant_id, tenantId or TenantId), trimmed; undefined if absent or empty. */
export function payloadTenant(payload: Record<string, unknown>): string | undefined {
  for (const field of TENANT_FIELDS) {
    const value = payload[field];
    if (typeof value === 'string' && value.trim() !== '') return value.trim();
    if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  }
  return undefined;
}

function usableTenant(value: string | undefined): string | undefined {
  const trimmed = value?.trim();
  if (!trimmed || trimmed.length > MAX_TENANT_LENGTH || BAD_TENANT.test(trimmed)) return undefined;
  return trimmed;
}

/** "lead.created" for apexflow.leads.created, unless the payload names its own type. */
export function eventTypeOf(topic: string, payload: Record<string, unknown>): string {
  const declared = payload.event_type ?? payload.type ?? payload.Type;
  if (typeof declared === 'string' && declared !== '') return declared;
  const parts = topic.split('.');
  if (parts.length >= 3) {
    const [entity, action] = parts.slice(-2);
    return `${entity.replace(/s$/, '')}.${action}`;
  }
  return topic;
}

/** For display: text when the bytes are UTF-8 without NUL (Postgres text holds neither), else "base64:<...>". */
export function textOrBase64(bytes: Buffer): string {
  try {
    const text = utf8.decode(bytes);
    if (!text.includes('\u0000')) return text;
  } catch {
    // fall through
  }
  return `base64:${bytes.toString('base64')}`;
}

import type { NewDlqEntry } from '../repository/event-dlq';
import type { NewJournalEntry } from '../repository/event-journal';

/** The parts of a kafkajs message the parser reads. */
export interface KafkaRecord {
  topic: string;
  partition: number;
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  headers?: Record<string, Buffer | string | (Buffer | string)[] | undefined>;
}

/** Why a record went to the DLQ; also the `reason` label of crm_events_dlq_total. */
export type RejectReason =
  'empty_value' | 'too_large' | 'invalid_utf8' | 'invalid_json' | 'not_object' | 'missing_tenant';

export interface Accepted {
  ok: true;
  entry: NewJournalEntry;
  eventType: string;
  replayedFrom: number | null;
}

export interface Rejected {
  ok: false;
  reason: RejectReason;
  dlq: NewDlqEntry;
}

export type ParsedRecord = Accepted | Rejected;

/** Payload fields and header the ApexFlow producers put the tenant in, in order of preference. */
const TENANT_FIELDS = ['tenant_id', 'tenantId', 'TenantId'] as const;
const TENANT_HEADER = 'x-tenant-id';

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Turns one Kafka record into a journal entry, or a DLQ entry with a precise error. Pure: no I/O, never throws.
 */
export function parseRecord(record: KafkaRecord, maxBytes: number): ParsedRecord {
  const { topic, partition, offset } = record;
  const key = record.key ? textOrBase64(record.key) : null;
  const reject = (reason: RejectReason, error: string, extra: Partial<NewDlqEntry> = {}): Rejected => ({
    ok: false,
    reason,
    dlq: {
      topic,
      partition,
      offset,
      key,
      tenantId: headerTenant(record.headers) ?? null,
      payloadJson: null,
      rawValue: record.value ? textOrBase64(record.value) : null,
      error,
      reason,
      ...extra,
    },
  });

  const value = record.value;
  if (value === null || value.length === 0) {
    return reject('empty_value', 'Record has no value (tombstone or empty message); expected a JSON object');
  }
  if (value.length > maxBytes) {
    return reject('too_large', `Record value is ${value.length} bytes, larger than INGEST_MAX_EVENT_BYTES=${maxBytes}`);
  }
  let text: string;
  try {
    text = utf8.decode(value);
  } catch {
    return reject('invalid_utf8', 'Record value is not valid UTF-8 (raw value stored as base64)');
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
  const tenantId = payloadTenant(fields) ?? headerTenant(record.headers);
  if (!tenantId) {
    return reject(
      'missing_tenant',
      `Event has no tenant: expected a non-empty ${TENANT_FIELDS.join(', ')} field or an ${TENANT_HEADER} header`,
      { payloadJson: text, rawValue: null },
    );
  }
  const replayedFrom = toEventId(fields._replayed_from_event_id);
  const isReplay = fields._replayed_from_event_id !== undefined;
  return {
    ok: true,
    eventType: eventTypeOf(topic, fields),
    replayedFrom,
    entry: {
      tenantId,
      topic,
      payloadJson: text,
      partition,
      offset,
      key,
      replayCount: isReplay ? replayHops(fields._replay_count) : 0,
      replaySource: isReplay ? stringOr(fields._replay_source, 'unknown') : null,
    },
  };
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

function headerTenant(headers: KafkaRecord['headers']): string | undefined {
  const raw = headers?.[TENANT_HEADER];
  const first = Array.isArray(raw) ? raw[0] : raw;
  const value = first === undefined ? '' : first.toString().trim();
  return value === '' ? undefined : value;
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

function toEventId(value: unknown): number | null {
  const n = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value;
  return typeof n === 'number' && Number.isSafeInteger(n) && n > 0 ? n : null;
}

/** Hops from the original: the replay activity writes `_replay_count`; older replays (seed format) count as 1. */
function replayHops(value: unknown): number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0 ? value : 1;
}

function stringOr(value: unknown, fallback: string): string {
  return typeof value === 'string' && value.trim() !== '' ? value.trim() : fallback;
}

/** Postgres text can hold neither invalid UTF-8 nor NUL: such bytes are kept as "base64:<...>". */
export function textOrBase64(bytes: Buffer): string {
  try {
    const text = utf8.decode(bytes);
    if (!text.includes('\u0000')) return text;
  } catch {
    // fall through
  }
  return `base64:${bytes.toString('base64')}`;
}

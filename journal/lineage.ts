import { createHmac, timingSafeEqual } from 'node:crypto';
import type { ReplayRow } from '../repository/event-journal';
import type { Queryable } from '../repository/queryable';
import { getServiceKey } from '../repository/service-keys';
import { isOutage } from '../shared/db';
import {
  TENANT_HEADER,
  decodeHeaders,
  lastHeaderValue,
  toRecordHeaders,
  type HeaderList,
  type RecordHeaders,
} from './headers';
import { applyTransform, type ReplayTransform } from './transform';

/** Header names a replay adds (the lineage again, and the proof over the value). */
export const LINEAGE_HEADERS = {
  from: 'x-replayed-from-event-id',
  source: 'x-replay-source',
  id: 'x-replay-id',
  count: 'x-replay-count',
  transform: 'x-replay-transform',
  proof: 'x-replay-proof',
} as const;

const LINEAGE_HEADER_NAMES: ReadonlySet<string> = new Set(Object.values(LINEAGE_HEADERS));

/** The secret that signs lineage: only this service's replays can carry a valid proof. */
export type LineageKey = Buffer;

/** Why and from what a record was replayed, as the proof vouches for it. */
export interface VerifiedLineage {
  replayedFrom: number;
  source: string;
  replayId: string;
  /** Hops from the original. */
  count: number;
}

export interface Lineage {
  source: string;
  replayId: string;
  targetTopic?: string;
  /** A JSON Patch applied to each payload before it is sent; its id goes into the lineage (`_replay_transform`). */
  transform?: ReplayTransform;
}

/** A Kafka message a replay sends: the journaled record's key bytes and headers, its payload plus lineage. */
export interface ReplayMessage {
  topic: string;
  key: Buffer | null;
  value: string;
  headers: RecordHeaders;
}

const PROOF_CONTEXT = 'crm-events-sink/lineage/v1\n';

/** HMAC-SHA256 over the whole value: lineage fields and payload cannot be changed without the key. */
export function lineageProof(key: LineageKey, value: Buffer | string): string {
  return createHmac('sha256', key).update(PROOF_CONTEXT).update(value).digest('base64url');
}

/**
 * The record's lineage when its x-replay-proof verifies over its value; otherwise null, and lineage-looking fields
 * are ordinary payload: a record from outside is an original, never dropped or counted as a replay.
 */
export function verifiedLineage(
  payload: Record<string, unknown>,
  headers: HeaderList,
  value: Buffer,
  key: LineageKey,
): VerifiedLineage | null {
  const proof = lastHeaderValue(headers, LINEAGE_HEADERS.proof);
  if (!proof || payload._replayed_from_event_id === undefined) return null;
  const expected = Buffer.from(lineageProof(key, value));
  if (proof.length !== expected.length || !timingSafeEqual(proof, expected)) return null;
  const from = payload._replayed_from_event_id;
  const count = payload._replay_count;
  if (typeof from !== 'number' || !Number.isSafeInteger(from) || from <= 0) return null;
  return {
    replayedFrom: from,
    source: typeof payload._replay_source === 'string' ? payload._replay_source : 'unknown',
    replayId: typeof payload._replay_id === 'string' ? payload._replay_id : '',
    count: typeof count === 'number' && Number.isSafeInteger(count) && count > 0 ? count : 1,
  };
}

/**
 * The Kafka message that replays a journal row: the payload exactly as journaled (Postgres' text of the jsonb,
 * without old lineage, never through JSON.parse) with this replay's lineage appended; the original key bytes and
 * headers, old lineage headers replaced by this replay's, and the proof. With a transform, the payload is the patched
 * one (journal/transform.ts) and the lineage names the transform; a payload the transform cannot apply to is refused
 * with the reason, and nothing is sent for it.
 */
export function replayMessageOf(
  row: ReplayRow,
  lineage: Lineage,
  key: LineageKey,
): { ok: true; message: ReplayMessage } | { ok: false; reason: string } {
  if (!lineage.transform) return { ok: true, message: toReplayMessage(row, lineage, key) };
  const transformed = applyTransform(row.payload_text, lineage.transform);
  if (!transformed.ok)
    return { ok: false, reason: `Event ${row.id}: transform ${lineage.transform.id}: ${transformed.reason}` };
  return { ok: true, message: toReplayMessage(row, lineage, key, transformed.text) };
}

/** The Kafka message that replays a journal row (replayMessageOf), its payload given when a transform changed it. */
export function toReplayMessage(
  row: ReplayRow,
  lineage: Lineage,
  key: LineageKey,
  payloadText = row.payload_text,
): ReplayMessage {
  const hops = row.replay_count + 1;
  const transform = lineage.transform?.id;
  const value = appendFields(payloadText, [
    ['_replayed_from_event_id', row.id],
    ['_replay_source', lineage.source],
    ['_replay_id', lineage.replayId],
    ['_replay_count', hops],
    ...(transform === undefined ? [] : [['_replay_transform', transform] as [string, string]]),
  ]);
  // A replayed row's lineage headers are this service's own (its previous replay): replaced. An original's headers
  // are content, whatever their names: kept. The proof that counts is the last one (journal/record.ts reads it so).
  const stored = decodeHeaders(row.kafka_headers);
  const headers = row.replay_count > 0 ? stored.filter(([name]) => !LINEAGE_HEADER_NAMES.has(name)) : stored;
  // Rows journaled before headers were kept may have had their tenant in a header: give it back.
  if (row.legacy && !headers.some(([name]) => name === TENANT_HEADER)) {
    headers.push([TENANT_HEADER, Buffer.from(row.tenant_id)]);
  }
  headers.push(
    [LINEAGE_HEADERS.from, Buffer.from(String(row.id))],
    [LINEAGE_HEADERS.source, Buffer.from(lineage.source)],
    [LINEAGE_HEADERS.id, Buffer.from(lineage.replayId)],
    [LINEAGE_HEADERS.count, Buffer.from(String(hops))],
    ...(transform === undefined ? [] : [[LINEAGE_HEADERS.transform, Buffer.from(transform)] as [string, Buffer]]),
    [LINEAGE_HEADERS.proof, Buffer.from(lineageProof(key, value))],
  );
  return {
    topic: lineage.targetTopic ?? row.topic,
    key: replayKey(row),
    value,
    headers: toRecordHeaders(headers),
  };
}

/** The original key bytes; rows journaled before they were stored kept the key as text ("base64:" if binary). */
function replayKey(row: ReplayRow): Buffer | null {
  if (row.kafka_key_bytes) return row.kafka_key_bytes;
  if (row.kafka_key === null) return null;
  return row.kafka_key.startsWith('base64:')
    ? Buffer.from(row.kafka_key.slice('base64:'.length), 'base64')
    : Buffer.from(row.kafka_key);
}

/** Where a repaired event came from: the dead letter and the repair (its patch id). */
export interface RepairLineage {
  dlqId: number;
  repairId: string;
}

/**
 * A repaired value with its lineage appended (journal/kinds.ts REPAIR_LINEAGE_FIELDS). A field of the same name
 * already there is overridden (jsonb keeps a key's last value); a repair's edit may not write them itself.
 */
export function withRepairLineage(objectText: string, lineage: RepairLineage): string {
  return appendFields(objectText, [
    ['_repaired_from_dlq_id', lineage.dlqId],
    ['_repair_id', lineage.repairId],
  ]);
}

/** Appends fields to a JSON object's text without re-serialising what is there (so no number loses a digit). */
function appendFields(objectText: string, fields: Array<[string, string | number]>): string {
  const added = fields.map(([name, value]) => `${JSON.stringify(name)}: ${JSON.stringify(value)}`).join(', ');
  const body = objectText.trimEnd();
  if (!body.endsWith('}')) throw new Error('journaled payload is not a JSON object');
  const inner = body.slice(0, -1).trimEnd();
  return inner.endsWith('{') ? `${inner}${added}}` : `${inner}, ${added}}`;
}

/** Why a row may not be replayed, or undefined when it may. */
export function refusalOf(row: Pick<ReplayRow, 'id' | 'replay_count'>, maxHops: number): string | undefined {
  if (row.replay_count + 1 > maxHops) {
    return `Event ${row.id} is already ${row.replay_count} replay hop(s) from its original; REPLAY_MAX_HOPS is ${maxHops}`;
  }
  return undefined;
}

/**
 * The lineage key: LINEAGE_KEY when configured, else the one migration 007 generated in Postgres. A process starting
 * while Postgres is down or still starting up waits for it (up to `waitMs`) instead of exiting: an outage pauses.
 * An aborted `signal` ends the wait at the next retry.
 */
export async function loadLineageKey(
  db: Queryable,
  configured: string | undefined,
  waitMs = 120_000,
  signal?: AbortSignal,
): Promise<LineageKey> {
  if (configured) return Buffer.from(configured);
  const deadline = Date.now() + waitMs;
  for (let delay = 250; ; delay = Math.min(delay * 2, 5_000)) {
    try {
      const stored = await getServiceKey(db, 'lineage');
      if (!stored) throw new Error('service_keys has no lineage key: run `npm run cli -- migrate`');
      return stored;
    } catch (err) {
      if (!isOutage(err) || Date.now() + delay > deadline || signal?.aborted) throw err;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

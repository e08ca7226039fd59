import { createHash } from 'node:crypto';
import { lockNames, type PoolClient } from '../shared/db';
import { legacyDlqMatches } from '../repository/event-dlq';
import { journaledReplayCopies, legacyJournalMatches, type ReplayCopy } from '../repository/event-journal';
import { matchesLegacyNote } from '../repository/removed-records';
import { getServiceKey } from '../repository/service-keys';
import { recordsAt, type StoredAt } from '../repository/stored-records';
import type { ParsedRecord } from './record';

/** A record whose coordinates already hold a different record (the topic was re-created, offsets restarted). */
export interface Reuse {
  /** Index of the record in the batch. */
  index: number;
  topic: string;
  partition: number;
  offset: string;
  /** Content hash of this record and of what is stored at its coordinates (hex; "legacy" for rows before 007). */
  hash: string;
  stored: string[];
}

export interface Classified {
  /** Indexes of records already stored with the same content: proven redeliveries, not written again. */
  redelivered: Set<number>;
  reused: Reuse[];
}

/**
 * How long a batch's session may be held up by its own process before it is ended: idle in its transaction, by
 * Postgres (idle_in_transaction_session_timeout, which also ends a live writer whose event loop stalls that long); in
 * a statement waiting on it, by the next writer of its partition, once its process's beat is a step old
 * (lockNames). The transaction holds its partitions' locks: an ingest process frozen mid-batch (SIGSTOP, a paused VM)
 * keeps its connection, and the consumer the group gives its partitions to would queue on those locks until the
 * frozen one is killed. Ended, the batch rolls back and is redelivered; a batch's own statements follow one another
 * without a wait.
 */
export const BATCH_IDLE_TIMEOUT_MS = 10_000;

/**
 * Tells proven redeliveries from new records by what the journal and the DLQ already hold, inside the transaction
 * that will write the batch. The journal is partitioned by received_at, so no unique index can span the partitions a
 * record and its redelivery may land in: instead, writers of the same Kafka partition (and of copies of the same
 * replay) are serialised by advisory locks taken here, and under the lock every committed row is visible to the
 * lookups. Then:
 * - same coordinates and same content hash, in either table or among the rows retention or an erasure removed
 *   (removed_records, by keyed hash): a redelivery; a different hash: a coordinate reuse, to be written (one query,
 *   an index range scan per table and partition, which finds nothing in the common case);
 * - a replay's copy of an event (verified lineage) already journaled for that replay, or twice in this batch: a
 *   republished copy, not journaled again.
 */
export async function classifyAgainstStore(client: PoolClient, records: ParsedRecord[]): Promise<Classified> {
  await lockNames(client, lockNamesOf(records), BATCH_IDLE_TIMEOUT_MS);
  const redelivered = new Set<number>();
  const reused: Reuse[] = [];
  let removedKey: Buffer | undefined;
  for (const group of byPartition(records)) {
    const { topic, partition, lo, hi } = group;
    const found = await recordsAt(client, topic, partition, lo, hi);
    if (!found.event_journal.length && !found.event_dlq.length && !found.removed_records.length) continue;
    const stored = byOffset([...found.event_journal, ...found.event_dlq]);
    const removed = byOffset(found.removed_records);
    if (found.removed_records.length) removedKey ??= await getServiceKey(client, 'erasure');
    const reuse = (index: number): Reuse => {
      const { offset, contentHash } = records[index].ok ? records[index].entry : records[index].dlq;
      const hash = contentHash?.toString('hex') ?? '';
      const notes = (removed.get(String(offset)) ?? []).map((h) => `removed:${h}`);
      return {
        index,
        topic,
        partition,
        offset: String(offset),
        hash,
        stored: [...(stored.get(String(offset)) ?? []), ...notes],
      };
    };
    const legacy: number[] = [];
    for (const index of group.indexes) {
      const { hash, stored: hashes } = reuse(index);
      if (hashes.length === 0) continue;
      const keyed = removedKey && hash ? keyedHash(removedKey, hash) : undefined;
      if (hashes.includes(hash) || (keyed !== undefined && hashes.includes(`removed:${keyed}`))) redelivered.add(index);
      else if (hashes.includes('legacy')) legacy.push(index);
      else if (hashes.some((h) => h.startsWith('removed:')) && (await matchesRemovedLegacy(client, records[index])))
        redelivered.add(index);
      else reused.push(reuse(index));
    }
    const matched = await legacyRedeliveries(client, topic, partition, records, legacy);
    for (const index of legacy) {
      if (matched.has(index)) redelivered.add(index);
      else reused.push(reuse(index));
    }
  }
  for (const index of await republishedCopies(client, records, redelivered)) redelivered.add(index);
  return { redelivered, reused };
}

/** The locks a batch needs: one per Kafka partition it holds, one per replay whose copies it holds. */
function lockNamesOf(records: ParsedRecord[]): string[] {
  return records.flatMap((record) => {
    const { topic, partition } = record.ok ? record.entry : record.dlq;
    const names = [`journal:${topic}/${partition}`];
    if (record.ok && record.lineage) names.push(`replay:${record.lineage.replayId}`);
    return names;
  });
}

/** Indexes of replay copies (not already set aside) whose (replay, event) is journaled, or earlier in the batch. */
async function republishedCopies(
  client: PoolClient,
  records: ParsedRecord[],
  redelivered: Set<number>,
): Promise<number[]> {
  const copies = records.flatMap((record, index): Array<ReplayCopy & { index: number }> =>
    record.ok && record.lineage && !redelivered.has(index)
      ? [{ index, replayId: record.lineage.replayId, replayedFrom: record.lineage.replayedFrom }]
      : [],
  );
  if (copies.length === 0) return [];
  const journaled = await journaledReplayCopies(client, copies);
  const seen = new Set<string>();
  return copies.flatMap(({ index, replayId, replayedFrom }) => {
    const key = `${replayId}/${replayedFrom}`;
    const again = journaled.has(key) || seen.has(key);
    seen.add(key);
    return again ? [index] : [];
  });
}

/** Rows from before content hashes: a redelivery if the stored row says the same (payload, or reason and value). */
async function legacyRedeliveries(
  client: PoolClient,
  topic: string,
  partition: number,
  records: ParsedRecord[],
  indexes: number[],
): Promise<Set<number>> {
  if (indexes.length === 0) return new Set();
  const accepted = indexes.flatMap((i) => {
    const r = records[i];
    return r.ok ? [{ index: i, offset: r.entry.offset!, payloadJson: r.entry.payloadJson }] : [];
  });
  const rejected = indexes.flatMap((i) => {
    const r = records[i];
    return r.ok
      ? []
      : [
          {
            index: i,
            offset: r.dlq.offset!,
            reason: r.reason,
            rawValue: r.dlq.rawValue,
            payloadJson: r.dlq.payloadJson,
          },
        ];
  });
  // One after the other: each comparison runs behind a savepoint on the same client.
  const journalSame = await legacyJournalMatches(client, topic, partition, accepted);
  const dlqSame = await legacyDlqMatches(client, topic, partition, rejected);
  return new Set([
    ...accepted.filter((c) => journalSame.has(c.offset)).map((c) => c.index),
    ...rejected.filter((c) => dlqSame.has(c.offset)).map((c) => c.index),
  ]);
}

interface PartitionGroup {
  topic: string;
  partition: number;
  lo: string;
  hi: string;
  indexes: number[];
}

function byPartition(records: ParsedRecord[]): PartitionGroup[] {
  const groups = new Map<string, PartitionGroup>();
  records.forEach((record, index) => {
    const { topic, partition, offset } = record.ok ? record.entry : record.dlq;
    if (partition === null || offset === null) return;
    const id = `${topic}/${partition}`;
    const group = groups.get(id);
    if (!group) {
      groups.set(id, { topic, partition, lo: offset, hi: offset, indexes: [index] });
      return;
    }
    group.indexes.push(index);
    if (offsetBelow(offset, group.lo)) group.lo = offset;
    if (offsetBelow(group.hi, offset)) group.hi = offset;
  });
  return [...groups.values()];
}

/** a < b for Kafka offsets (decimal int64 strings, never negative here): by length, then digits. */
function offsetBelow(a: string, b: string): boolean {
  return a.length !== b.length ? a.length < b.length : a < b;
}

/** Whether a record is one whose row, written before 007 (no content hash), was removed and noted in its legacy form. */
function matchesRemovedLegacy(client: PoolClient, record: ParsedRecord): Promise<boolean> {
  const { topic, partition, offset } = record.ok ? record.entry : record.dlq;
  const content = record.ok
    ? { payloadJson: record.entry.payloadJson, rawValue: null }
    : { payloadJson: record.dlq.payloadJson, rawValue: record.dlq.rawValue };
  return matchesLegacyNote(client, { topic, partition: partition!, offset: String(offset) }, content);
}

/** A content hash (hex) as removed_records keeps it: SHA-256 of the erasure salt, then the hash (hex). */
function keyedHash(key: Buffer, contentHashHex: string): string {
  return createHash('sha256').update(key).update(Buffer.from(contentHashHex, 'hex')).digest('hex');
}

function byOffset(rows: StoredAt[]): Map<string, string[]> {
  const map = new Map<string, string[]>();
  for (const row of rows) {
    const hashes = map.get(row.offset) ?? [];
    hashes.push(row.content_hash?.toString('hex') ?? 'legacy');
    map.set(row.offset, hashes);
  }
  return map;
}

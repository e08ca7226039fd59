import type { Pool } from '../shared/db';
import { legacyDlqMatches } from '../repository/event-dlq';
import { legacyJournalMatches } from '../repository/event-journal';
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
 * Tells proven redeliveries from new records by what the journal and the DLQ already hold at the batch's
 * coordinates: one index range scan per table and partition, which finds nothing in the common case. Same
 * coordinates and same content hash is a redelivery; a different hash is a coordinate reuse, to be written.
 */
export async function classifyAgainstStore(pool: Pool, records: ParsedRecord[]): Promise<Classified> {
  const redelivered = new Set<number>();
  const reused: Reuse[] = [];
  for (const group of byPartition(records)) {
    const { topic, partition, lo, hi } = group;
    const [journal, dlq] = await Promise.all([
      recordsAt(pool, 'event_journal', topic, partition, lo, hi),
      recordsAt(pool, 'event_dlq', topic, partition, lo, hi),
    ]);
    if (journal.length === 0 && dlq.length === 0) continue;
    const stored = byOffset([...journal, ...dlq]);
    const reuse = (index: number): Reuse => {
      const { offset, contentHash } = records[index].ok ? records[index].entry : records[index].dlq;
      const hash = contentHash?.toString('hex') ?? '';
      return { index, topic, partition, offset: String(offset), hash, stored: stored.get(String(offset)) ?? [] };
    };
    const legacy: number[] = [];
    for (const index of group.indexes) {
      const { hash, stored: hashes } = reuse(index);
      if (hashes.length === 0) continue;
      if (hashes.includes(hash)) redelivered.add(index);
      else if (hashes.includes('legacy')) legacy.push(index);
      else reused.push(reuse(index));
    }
    const matched = await legacyRedeliveries(pool, topic, partition, records, legacy);
    for (const index of legacy) {
      if (matched.has(index)) redelivered.add(index);
      else reused.push(reuse(index));
    }
  }
  return { redelivered, reused };
}

/** Rows from before content hashes: a redelivery if the stored row says the same (payload, or reason and value). */
async function legacyRedeliveries(
  pool: Pool,
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
  const [journalSame, dlqSame] = await Promise.all([
    legacyJournalMatches(pool, topic, partition, accepted),
    legacyDlqMatches(pool, topic, partition, rejected),
  ]);
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

function byOffset(rows: StoredAt[]): Map<string, string[]> {
  const map = new Map<string, string[]>();
  for (const row of rows) {
    const hashes = map.get(row.offset) ?? [];
    hashes.push(row.content_hash?.toString('hex') ?? 'legacy');
    map.set(row.offset, hashes);
  }
  return map;
}

import type { Admin } from 'kafkajs';
import {
  checkAccounting,
  checkRecords,
  checkReplays,
  stuckPartitions,
  type CompletedReplay,
  type PartitionOffsets,
  type Produced,
  type Violation,
} from '../../bench/soak/check';
import { collectDatabase, partitionOffsets, type CollectScope } from '../../bench/soak/collect';

/** What one scenario of the cluster fault suite must have left: its records, its replays, the ingest processes. */
export interface IntegrityInput {
  databaseUrl: string;
  admin: Admin;
  groupId: string;
  topics: readonly string[];
  /** What the scenario's producers got acknowledgements for (coordinates and bytes). */
  produced: Omit<Produced, 'canonical'>[];
  /** Replays that completed, each with the event ids it had to journal once. */
  completed: CompletedReplay[];
  /** The journal and DLQ as they were before the scenario produced anything. */
  scope: CollectScope;
  /** /metrics of every ingest process alive at the end. */
  ingestMetrics: string[];
  /** How long the drain may take: every partition consumed up to its high watermark (ms). */
  drainMs: number;
}

export interface IntegrityVerdict {
  produced: number;
  journaled: number;
  deadLettered: number;
  resolvedFromDlq: number;
  lost: number;
  duplicated: number;
  altered: number;
  replayRows: number;
  replaysDuplicated: number;
  replaysIncomplete: number;
  stuckPartitions: number;
  drainMs: number;
  violations: Violation[];
}

/**
 * Waits (bounded by ms) until the group has committed every partition of its topics up to the high watermark: every
 * record on them has been journaled. Returns the offsets last read, which name the partitions left behind if any.
 */
export async function drain(admin: Admin, groupId: string, topics: readonly string[], ms: number) {
  const began = Date.now();
  let offsets: PartitionOffsets[] = [];
  for (;;) {
    offsets = await partitionOffsets(admin, groupId, topics).catch(() => offsets);
    if (offsets.length > 0 && stuckPartitions(offsets).length === 0) break;
    if (Date.now() - began > ms) break;
    await new Promise((r) => setTimeout(r, 1000));
  }
  return { offsets, drainMs: Date.now() - began };
}

/**
 * The chaos soak's checker (bench/soak/check.ts, the invariants of docs/integrity.md) run on the cluster after a
 * scenario: first a bounded drain (every partition of the ingest group committed up to its high watermark, so every
 * record, replays included, has been journaled), then every acknowledged record in exactly one place with its content
 * (invariant 1), every completed replay journaled once per event and byte-equal to its original (6), no stuck
 * partition, and consumed = journaled + dead-lettered + redelivered on each live ingest process (3).
 */
export async function checkIntegrity(input: IntegrityInput): Promise<IntegrityVerdict> {
  const { offsets, drainMs } = await drain(input.admin, input.groupId, input.topics, input.drainMs);
  const stuck = offsets.length > 0 ? stuckPartitions(offsets) : [{ rule: 'stuck_partition', detail: 'no offsets' }];

  const collected = await collectDatabase(input.databaseUrl, input.produced, input.scope);
  const records = checkRecords(collected.produced, collected.journal, collected.dlq);
  const replays = checkReplays(collected.replays, records.originalIds, input.completed);
  const accounting: Violation[] = [];
  for (const url of input.ingestMetrics) {
    const text = await (await fetch(url, { signal: AbortSignal.timeout(10_000) })).text();
    const result = checkAccounting(text);
    if (!result.present) accounting.push({ rule: 'metrics_unavailable', detail: `${url} exposes no counters` });
    accounting.push(...result.violations.map((v) => ({ ...v, detail: `${url}: ${v.detail}` })));
  }
  return {
    produced: records.produced,
    journaled: records.journaled,
    deadLettered: records.deadLettered,
    resolvedFromDlq: records.resolvedFromDlq,
    lost: records.lost,
    duplicated: records.duplicated,
    altered: records.altered,
    replayRows: replays.replayRows,
    replaysDuplicated: replays.duplicated,
    replaysIncomplete: replays.incomplete,
    stuckPartitions: stuck.length,
    drainMs,
    violations: [...records.violations, ...replays.violations, ...stuck, ...accounting],
  };
}

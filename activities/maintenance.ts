import { createHash } from 'node:crypto';
import { Context, ApplicationFailure } from '@temporalio/activity';
import {
  deleteSegment,
  findManifest,
  verifySegment,
  writeSegment,
  type ProgressListener,
  type SegmentManifest,
} from '../archive';
import { ensurePartitions } from '../lifecycle/partitions';
import { effectivePolicies, planDeadLetterExpiry, planRetention, type RetentionStep } from '../lifecycle/retention';
import { deleteExpiredDeadLetters } from '../repository/dlq-retention';
import { journalArchiveRows, type JournalArchiveSource } from '../repository/journal-archive';
import {
  countJournalRows,
  deleteJournalRows,
  dropJournalPartition,
  holdPartitionForRemoval,
  journalPartitionIdent,
  listJournalPartitions,
  oneSnapshot,
  rememberRemovedJournalRows,
} from '../repository/journal-partitions';
import { deleteRemovedRecordsBefore, redeliveryHorizon } from '../repository/removed-records';
import {
  appendLifecycleAction,
  databaseClock,
  erasuresInProgress,
  segmentArchiveRecorded,
  finishLifecycleAudit,
  startLifecycleAudit,
} from '../repository/lifecycle-audit';
import { listRetentionRows, topicsInPartition } from '../repository/retention';
import { withTransaction } from '../shared/db';
import type { ActivityDeps } from './deps';
import { withdrawStaleSegments } from './stale-segments';

/** What archiving one retention step produced: its segment (none when there was nothing to archive). */
export interface ArchivedStep {
  segment: string | null;
  rows: number;
}

/**
 * Archiving waits while an erasure runs: a segment written from rows read before the erasure deleted them would
 * keep the erased values. The activity fails retryably, and its retries (backoff up to 10 minutes) wait it out.
 */
async function waitForErasures(pool: ActivityDeps['pool']): Promise<void> {
  const running = await erasuresInProgress(pool);
  if (running.length) {
    throw ApplicationFailure.retryable(
      `Erasure ${running.join(', ')} is running: archiving waits`,
      'ErasureInProgress',
    );
  }
}

/** Rows between heartbeats while a segment is written or read back. */
const HEARTBEAT_EVERY = 5000;

/**
 * Heartbeats a segment's write and its read-back (verify) every HEARTBEAT_EVERY rows of each: a large segment's
 * read-back takes longer than the heartbeat timeout too. The store tells its progress every chunk.
 */
function heartbeatProgress(context: Context, segment: string): ProgressListener {
  let phase = '';
  let next = 0;
  return (progress) => {
    if (progress.phase !== phase) [phase, next] = [progress.phase, 0];
    if (progress.rows < next) return;
    next = progress.rows + HEARTBEAT_EVERY;
    context.heartbeat({ segment, ...progress });
  };
}

/** Dead letters deleted per statement by dead-letter retention. */
const DEAD_LETTER_BATCH = 5000;

/** The segment a step archives into: the partition's name, or partition.topic.before-YYYYMMDD for a topic's rows. */
export function segmentOf(step: RetentionStep): string {
  if (step.action === 'drop_partition') return step.partition;
  // Kafka topic names reach 249 characters, segment names 200: a long one is shortened and made unique by a hash.
  const topic =
    step.topic.length <= 100
      ? step.topic
      : `${step.topic.slice(0, 80)}-${createHash('sha256').update(step.topic).digest('hex').slice(0, 16)}`;
  return `${step.partition}.${topic}.before-${step.before.slice(0, 10).replaceAll('-', '')}`;
}

function sourceOf(step: RetentionStep): JournalArchiveSource {
  journalPartitionIdent(step.partition);
  return step.action === 'drop_partition'
    ? { table: step.partition }
    : { table: step.partition, topic: step.topic, receivedBefore: step.before };
}

/**
 * The journal maintenance activities (docs/lifecycle.md): partitions ahead, then retention — each expired partition
 * or topic slice archived, verified, and only then dropped or deleted. Every step is idempotent and recorded in
 * lifecycle_audit.
 */
export function createMaintenanceActivities(deps: ActivityDeps) {
  const { pool, archive, config, log } = deps;
  /** Retention's plan for the given partitions now, under the policies in force now. */
  const plan = async (now: Date, only?: string): Promise<RetentionStep[]> => {
    const partitions = (await listJournalPartitions(pool)).filter((p) => only === undefined || p.name === only);
    const topicsIn: Record<string, string[]> = {};
    for (const p of partitions) {
      if (!p.isDefault && (p.from === null || p.from < now)) topicsIn[p.name] = await topicsInPartition(pool, p.name);
    }
    const policies = effectivePolicies(config.journal.retentionDays, await listRetentionRows(pool));
    return planRetention(
      partitions.filter((p) => p.isDefault || p.from === null || p.from < now),
      topicsIn,
      policies,
      now,
    );
  };
  /**
   * Whether a step planned earlier in the run is still what retention asks now: a policy changed meanwhile (a legal
   * hold: PUT /retention to keep forever) takes effect before anything is archived or removed.
   */
  const stillPlanned = async (step: RetentionStep): Promise<boolean> =>
    (await plan(new Date(), step.partition)).some((s) => JSON.stringify(s) === JSON.stringify(step));
  return {
    async maintenanceStarted(input: { workflowId: string; requestedBy?: string; request: Record<string, unknown> }) {
      await startLifecycleAudit(pool, { ...input, kind: 'maintenance' });
    },

    async maintenanceFinished(input: { workflowId: string; status: 'completed' | 'failed'; error?: string }) {
      await finishLifecycleAudit(pool, input.workflowId, input.status, input.error);
    },

    async createJournalPartitions(input: { workflowId: string; now: number }) {
      const { partitionInterval, partitionsAhead } = config.journal;
      const created = await ensurePartitions(pool, partitionInterval, partitionsAhead, new Date(input.now));
      for (const partition of created) {
        await appendLifecycleAction(pool, input.workflowId, { action: 'partition_created', ...partition });
      }
      return created;
    },

    /** What retention asks now: the policies in force applied to the partitions and the topics each holds. */
    async planJournalRetention(input: { now: number }): Promise<RetentionStep[]> {
      return plan(new Date(input.now));
    },

    /**
     * Archives the rows a step will remove as one segment, verified (re-read, counted, checksummed) before its
     * manifest is written. A step whose segment an earlier attempt archived and recorded, then failed before removing,
     * is verified again instead. A topic slice with no rows left is nothing to do.
     */
    async archiveRetentionStep(input: { workflowId: string; step: RetentionStep }): Promise<ArchivedStep> {
      const { step } = input;
      const context = Context.current();
      await waitForErasures(pool);
      if (!(await stillPlanned(step))) return { segment: null, rows: 0 };
      const segment = segmentOf(step);
      // A topic slice already removed (by this run's earlier attempt, or an earlier run the same day): done.
      if (step.action === 'delete_rows' && (await countJournalRows(pool, sourceOf(step))) === 0) {
        return { segment: null, rows: 0 };
      }
      // A segment of this partition archived by a step that was not applied holds rows this one would archive again.
      await withdrawStaleSegments({ pool, archive, log }, input.workflowId, step.partition, segment);
      const onProgress = heartbeatProgress(context, segment);
      const existing = await findManifest(archive, segment);
      if (existing && (await segmentArchiveRecorded(pool, existing))) {
        await verifySegment(archive, existing, { onProgress });
        return { segment, rows: existing.rows };
      }
      // A segment file no run recorded was left by an attempt that ended (cancelled, crashed) before its erasure check
      // below: an erasure may have run unseen while it was written, and its rows may be in it. It is written again
      // (as is one an erasure rewrote since: its rows are still journaled, less the erased ones). Whatever of it is
      // there goes first, manifest or not: a delete cut off may have left data files without their manifest.
      await deleteSegment(archive, segment);
      const writing = await databaseClock(pool);
      const manifest = await withTransaction(pool, async (client) => {
        // One snapshot for the count and the rows: the segment holds exactly what the count says.
        await oneSnapshot(client);
        const source = sourceOf(step);
        const expectedRows = await countJournalRows(client, source);
        if (expectedRows === 0 && step.action === 'delete_rows') return undefined;
        return writeSegment(archive, {
          segment,
          table: step.partition,
          bounds:
            step.action === 'drop_partition'
              ? { from: step.from ?? '-infinity', to: step.to }
              : { from: '-infinity', to: step.before },
          rows: journalArchiveRows(client, source),
          expectedRows,
          onProgress,
        });
      });
      if (!manifest) return { segment: null, rows: 0 };
      // An erasure that ran while the segment was written did not see it (no manifest yet), and the rows read before
      // its deletes are in it: the segment goes, and a retry archives again once the erasure is over.
      const erasures = await erasuresInProgress(pool, writing);
      if (erasures.length) {
        await deleteSegment(archive, segment);
        throw ApplicationFailure.retryable(
          `Erasure ${erasures.join(', ')} ran while ${segment} was written: the segment is archived again after it`,
          'ErasureInProgress',
        );
      }
      await appendLifecycleAction(pool, input.workflowId, {
        action: 'segment_archived',
        segment,
        partition: step.partition,
        ...(step.action === 'delete_rows' ? { topic: step.topic, before: step.before } : {}),
        rows: manifest.rows,
        sha256: manifest.file.sha256,
        manifest_created_at: manifest.created_at,
      });
      log.info({ segment, rows: manifest.rows }, 'Journal segment archived and verified');
      return { segment, rows: manifest.rows };
    },

    /**
     * Removes what a step archived, after verifying the segment once more: the partition dropped, or the topic's
     * rows deleted. Under a lock that stops writers, the rows removed must be exactly the segment's (count and id
     * range); otherwise nothing is removed and the step fails without retry (ArchiveMismatch), for an operator.
     */
    async applyRetentionStep(input: { workflowId: string; step: RetentionStep; segment: string }) {
      const { step } = input;
      const context = Context.current();
      await waitForErasures(pool);
      if (!(await stillPlanned(step))) {
        log.info({ partition: step.partition }, 'Retention changed since the plan: the step is left for the next run');
        return { rows: 0 };
      }
      const manifest: SegmentManifest = await verifySegment(archive, input.segment, {
        onProgress: heartbeatProgress(context, input.segment),
      });
      const removed = await withTransaction(pool, async (client) => {
        const source = sourceOf(step);
        await holdPartitionForRemoval(client, step.partition);
        // Under the lock a withdrawal takes too: the segment verified above must still be the one in the store.
        const current = await findManifest(archive, manifest.segment);
        if (current?.file.sha256 !== manifest.file.sha256) {
          throw ApplicationFailure.retryable(
            `${step.partition}: the archived segment ${manifest.segment} changed or was withdrawn since it was verified`,
            'ArchiveChanged',
          );
        }
        const now = await countJournalRows(client, source, manifest.id?.max ?? 0);
        const total = await countJournalRows(client, source);
        if (now !== manifest.rows || total !== manifest.rows) {
          throw ApplicationFailure.nonRetryable(
            `${step.partition}: ${total} rows to remove, the archived segment ${manifest.segment} holds ${manifest.rows}`,
            'ArchiveMismatch',
          );
        }
        // Kafka may still deliver some of these records again: dedupe must still know them once their rows are gone.
        const horizon = redeliveryHorizon(config.journal.redeliveryHorizonMs);
        await rememberRemovedJournalRows(client, source, manifest.id?.max ?? 0, horizon);
        if (step.action === 'drop_partition') {
          await dropJournalPartition(client, step.partition);
          return total;
        }
        return deleteJournalRows(client, source, manifest.id?.max ?? 0);
      });
      const action = step.action === 'drop_partition' ? 'partition_dropped' : 'rows_deleted';
      await appendLifecycleAction(pool, input.workflowId, {
        action,
        partition: step.partition,
        ...(step.action === 'delete_rows' ? { topic: step.topic, before: step.before } : {}),
        rows: removed,
        segment: manifest.segment,
      });
      log.info({ partition: step.partition, action, rows: removed }, 'Journal retention applied');
      return { rows: removed };
    },

    /**
     * Deletes the dead letters past their topic's retention (planDeadLetterExpiry), one batch per expiry per round,
     * each batch in one transaction with its audit action (a retried attempt neither loses nor repeats a count) and
     * remembering the records Kafka may still deliver again. The policies are read again before every round, so a
     * hold placed meanwhile stops it after the batch in flight. Returns how many it deleted (across attempts).
     */
    async expireDeadLetters(input: { workflowId: string; now: number }): Promise<number> {
      const context = Context.current();
      let total = (context.info.heartbeatDetails as number | undefined) ?? 0;
      const horizon = redeliveryHorizon(config.journal.redeliveryHorizonMs, input.now);
      for (let more = true; more;) {
        more = false;
        const policies = effectivePolicies(config.journal.retentionDays, await listRetentionRows(pool));
        for (const expiry of planDeadLetterExpiry(policies, new Date(input.now))) {
          const selection = expiry.topic === null ? { exceptTopics: expiry.exceptTopics } : { topic: expiry.topic };
          const topic = expiry.topic ?? '*';
          const rows = await withTransaction(pool, async (client) => {
            const n = await deleteExpiredDeadLetters(
              client,
              selection,
              new Date(expiry.before),
              DEAD_LETTER_BATCH,
              horizon,
            );
            if (n > 0) {
              await appendLifecycleAction(client, input.workflowId, {
                action: 'dead_letters_deleted',
                topic,
                before: expiry.before,
                rows: n,
              });
            }
            return n;
          });
          total += rows;
          context.heartbeat(total);
          if (rows > 0) log.info({ topic, rows }, 'Dead letters past retention deleted');
          if (rows === DEAD_LETTER_BATCH) more = true;
        }
      }
      return total;
    },

    /** Forgets removed records Kafka can no longer deliver (received before the redelivery horizon). */
    async pruneRemovedRecords(input: { workflowId: string; now: number }): Promise<number> {
      const horizon = redeliveryHorizon(config.journal.redeliveryHorizonMs, input.now);
      if (horizon === null) return 0;
      const rows = await deleteRemovedRecordsBefore(pool, horizon);
      if (rows > 0) await appendLifecycleAction(pool, input.workflowId, { action: 'removed_records_pruned', rows });
      return rows;
    },
  };
}

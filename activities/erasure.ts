import { ApplicationFailure, Context } from '@temporalio/activity';
import {
  ArchiveConditionalWriteError,
  checkConditionalWrites,
  deleteIncompleteSegments,
  listSegments,
  readSegment,
  rewriteSegment,
  settlePendingWrite,
  sweepSegment,
  type ArchiveRow,
  type PendingWriteLog,
} from '../archive';
import { archiveRowMatcher, idWindows } from '../lifecycle/erasure-scan';
import { describeTarget, type ErasureTarget } from '../lifecycle/erasure-target';
import {
  awaitReplaySends,
  countErasedArchiveRows,
  erasureCounts,
  forgetErasureSubject,
  loadErasureSubject,
  recordErasedArchiveIds,
  type ErasureCounts,
} from '../repository/erasure';
import { deleteMatches, type ErasureTable } from '../repository/erasure-match';
import {
  forgetPendingArchiveWrite,
  listPendingArchiveWrites,
  recordPendingArchiveWrite,
} from '../repository/archive-pending-writes';
import { redactOperatorCopies } from '../repository/erasure-redaction';
import {
  appendLifecycleAction,
  finishLifecycleAudit,
  getLifecycleAudit,
  startLifecycleAudit,
} from '../repository/lifecycle-audit';
import { redeliveryHorizon } from '../repository/removed-records';
import { withSessionLock } from '../shared/db';
import { replayFencing } from '../shared/kafka';
import type { ActivityDeps } from './deps';
import { activityNotifier } from './notification';

/** Which erasure, and the hash its subject is stored under (the value itself never passes through Temporal). */
export interface ErasureRef {
  erasureId: string;
  subjectHash: string;
}

export interface EraseRowsInput extends ErasureRef {
  table: ErasureTable;
  /** Start after this id (0: the whole table). */
  afterId: number;
  /** Ids per delete statement. */
  windowIds: number;
}

/** The lock an erasure's archive pass holds (shared/db.ts withSessionLock). */
const ARCHIVE_PASS_LOCK = 'erasure-archive-pass';

/** Rows read between two heartbeats while a segment is read or rewritten. */
const HEARTBEAT_ROWS = 1000;

/** The erasure workflow's steps: audit, journal and DLQ deletes in id windows, archive rewrites. All idempotent. */
export function createErasureActivities(deps: ActivityDeps) {
  const { pool, archive, config } = deps;
  // A replay page whose process went may have left its send in a broker: its producer is fenced before it counts gone.
  const fence = replayFencing(deps.producer)?.fenceOthers;
  const notify = activityNotifier(deps);
  const targetOf = async (ref: ErasureRef): Promise<ErasureTarget> => {
    const target = await loadErasureSubject(pool, ref.subjectHash);
    if (target) return target;
    throw ApplicationFailure.nonRetryable(
      `The subject of erasure ${ref.erasureId} is no longer stored (its erasure ended): request the erasure again`,
      'InvalidRequest',
    );
  };
  // Once per process, before its first rewrite: a store that ignores If-Match would make the manifest switch blind.
  let conditionalWrites: Promise<void> | undefined;
  const assertConditionalWrites = (): Promise<void> => {
    conditionalWrites ??= checkConditionalWrites(archive).catch((err: unknown) => {
      if (err instanceof ArchiveConditionalWriteError) throw ApplicationFailure.nonRetryable(err.message, err.name);
      conditionalWrites = undefined; // a store that did not answer is asked again by the next attempt
      throw err;
    });
    return conditionalWrites;
  };
  // A rewrite's new file is in Postgres from before it is written until its switch is settled (docs/archive.md).
  const pendingWrites: PendingWriteLog = {
    record: (write) => recordPendingArchiveWrite(pool, write),
    forget: (write) => forgetPendingArchiveWrite(pool, write.key),
  };
  // Any erasure's leftovers: each file whose switch can no longer land is deleted (a store that does not answer throws).
  const settlePendingWrites = async (): Promise<void> => {
    for (const write of await listPendingArchiveWrites(pool)) {
      if ((await settlePendingWrite(archive, write)) !== 'pending') await forgetPendingArchiveWrite(pool, write.key);
    }
  };

  return {
    async recordErasureStarted(input: ErasureRef & { requestedBy?: string }): Promise<void> {
      const target = await targetOf(input);
      await startLifecycleAudit(pool, {
        workflowId: input.erasureId,
        kind: 'erasure',
        requestedBy: input.requestedBy,
        request: { ...describeTarget(target), subject_hash: input.subjectHash },
      });
    },

    /**
     * Deletes the target's rows of one table, window by window from afterId to the table's end (read again at the
     * end). Each window is one transaction with its erased ids and count; the heartbeat carries the last window done,
     * so a retry resumes there. Then waits for the replay pages that checked ids before they were recorded to end
     * their sends (awaitReplaySends), so that none goes out after the erasure completed. Returns the last id covered.
     */
    async eraseRows(input: EraseRowsInput): Promise<{ lastId: number }> {
      const target = await targetOf(input);
      const context = Context.current();
      let cursor = (context.info.heartbeatDetails as number | undefined) ?? input.afterId;
      const client = await pool.connect();
      try {
        // The windows' bounds are read on the same connection: a pass holds one, never two (a pool shared by many at once).
        for await (const [from, to] of idWindows(client, input.table, cursor, input.windowIds)) {
          const horizon = redeliveryHorizon(config.journal.redeliveryHorizonMs);
          await deleteMatches(client, input.table, target, input.erasureId, from, to, horizon);
          cursor = to;
          context.heartbeat(cursor);
        }
      } finally {
        client.release();
      }
      await awaitReplaySends(pool, {
        onWait: () => context.heartbeat(cursor),
        signal: context.cancellationSignal,
        fence,
      });
      return { lastId: cursor };
    },

    /**
     * Rewrites every archived segment that holds a row of the target without those rows (rewriteSegment: new
     * generation, verified, the dropped ids recorded in erased_events, manifest swapped, old file deleted). A segment
     * is read first and rewritten only when it holds one; one that does not is swept of files its manifest does not
     * point at (a rewrite cut between its manifest and its sweep left the previous generation, with the rows, behind).
     * Segments are taken in name order and the heartbeat carries the last one done. At the end, waits for the cold
     * replay pages that checked ids before they were recorded to end their sends (awaitReplaySends).
     */
    async eraseArchiveRows(input: ErasureRef): Promise<void> {
      const target = await targetOf(input);
      const context = Context.current();
      const resumeAfter = context.info.heartbeatDetails as string | undefined;
      let lastDone = resumeAfter;
      const matches = archiveRowMatcher(pool, target);
      let read = 0;
      const tick = () => {
        if (++read % HEARTBEAT_ROWS === 0) context.heartbeat(lastDone);
      };
      // One archive pass at a time, whichever erasure and worker: two rewrites of a segment at once would both write
      // its next generation under one key, and the last manifest switch would bring back the other's rows.
      const waiting = { onWait: () => context.heartbeat(lastDone), signal: context.cancellationSignal };
      await withSessionLock(pool, ARCHIVE_PASS_LOCK, waiting, async (held) => {
        await settlePendingWrites();
        const incomplete = await deleteIncompleteSegments(archive);
        if (incomplete.length)
          context.log.info('Erasure deleted the files of unfinished archivings', { keys: incomplete });
        for (const manifest of await listSegments(archive)) {
          if (resumeAfter !== undefined && manifest.segment <= resumeAfter) continue;
          if (await holdsMatch(readSegment(archive, manifest, { verify: false }), matches, tick)) {
            await assertConditionalWrites();
            const dropped: number[] = [];
            const result = await rewriteSegment(
              archive,
              manifest.segment,
              async (row) => {
                tick();
                if (!(await matches(row))) return 'keep';
                dropped.push(row.id);
                return 'drop';
              },
              {
                // Still this pass's turn (its lock's connection may have ended), then the ids, then the switch.
                beforeSwitch: async () => {
                  await held();
                  await recordErasedArchiveIds(pool, input.erasureId, dropped);
                },
                pending: pendingWrites,
              },
            );
            if (result.changed) await countErasedArchiveRows(pool, input.erasureId, result.dropped);
          } else {
            await sweepSegment(archive, manifest);
          }
          lastDone = manifest.segment;
          context.heartbeat(lastDone);
        }
      });
      await awaitReplaySends(pool, { ...waiting, fence });
    },

    /**
     * Ends the audit with what was erased per store (once: a retry finds it ended), then forgets the subject's value.
     */
    async recordErasureFinished(
      input: ErasureRef & { status: 'completed' | 'failed'; error?: string },
    ): Promise<ErasureCounts> {
      const counts = await erasureCounts(pool, input.erasureId);
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        const audit = await getLifecycleAudit(client, input.erasureId);
        if (audit?.status === 'running') {
          // Copies of the value in the audit of operators' actions (a replay's payload filter, a repair's value).
          const target = await loadErasureSubject(client, input.subjectHash);
          const copies = target ? await redactOperatorCopies(client, target.value) : 0;
          await appendLifecycleAction(client, input.erasureId, {
            action: 'erased',
            journal_rows: counts.journal.rows,
            dlq_rows: counts.dlq.rows,
            archive_segments: counts.archive.segments,
            archive_rows: counts.archive.rows,
            operator_copies_redacted: copies,
          });
          await finishLifecycleAudit(client, input.erasureId, input.status, input.error);
        }
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      } finally {
        client.release();
      }
      await forgetErasureSubject(pool, input.subjectHash, input.erasureId);
      if (input.status === 'completed') {
        // Counts and the erasure's id only: never the subject (its hash neither: it is kept out of every message).
        await notify({
          kind: 'erasure_completed',
          key: input.erasureId,
          data: {
            erasure_id: input.erasureId,
            journal_rows: counts.journal.rows,
            dlq_rows: counts.dlq.rows,
            archive_segments: counts.archive.segments,
            archive_rows: counts.archive.rows,
          },
        });
      }
      return counts;
    },
  };
}

/** Whether any row matches; stops reading at the first. */
async function holdsMatch(
  rows: AsyncIterable<ArchiveRow>,
  matches: (row: ArchiveRow) => Promise<boolean>,
  tick: () => void,
): Promise<boolean> {
  for await (const row of rows) {
    tick();
    if (await matches(row)) return true;
  }
  return false;
}

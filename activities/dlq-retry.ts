import { withJournaling } from '../journal/append';
import {
  dueDlqIds,
  getDlqEntry,
  markDlqBulkAction,
  markDlqFailed,
  markDlqResolved,
  type DlqRecord,
} from '../repository/event-dlq';
import type { Queryable } from '../repository/queryable';
import { journalDeadLetter } from '../journal/dead-letter';
import type { DlqRetryOutcome } from '../journal/kinds';
import type { ActivityDeps } from './deps';
import { activityNotifier } from './notification';
import type { Notification } from '../notifications/emit';

export type { DlqRetryOutcome } from '../journal/kinds';

export interface RetryDlqInput {
  ids: number[];
  /** Workflow time (ms): backoff is computed from it so that time-skipping tests move it. */
  now: number;
  /** Operator-requested: retry even entries that are parked or not yet due. */
  force: boolean;
  /** A bulk action's id (dlqBulkWorkflow): each entry is retried once by it, even if this activity is retried. */
  bulkId?: string;
}

/** DLQ retry: each due entry goes through the journal's own parser and append again (journal/dead-letter.ts). */
export function createDlqActivities(deps: ActivityDeps) {
  const { pool, metrics, config, log, lineageKey } = deps;
  const { maxAttempts, baseDelayMs } = config.dlqRetry;
  const notify = activityNotifier(deps);
  const parseOptions = { maxBytes: config.ingest.maxEventBytes, lineageKey };
  return {
    async findDueDlqEntries(input: { now: number; limit: number }): Promise<number[]> {
      return dueDlqIds(pool, new Date(input.now), input.limit);
    },

    async retryDlqEntries(input: RetryDlqInput): Promise<Record<DlqRetryOutcome, number>> {
      const totals: Record<DlqRetryOutcome, number> = { resolved: 0, retrying: 0, parked: 0, skipped: 0 };
      for (const id of input.ids) {
        let parked: DlqRecord | undefined;
        const outcome = await withJournaling(pool, async (client) => {
          const entry = await getDlqEntry(client, id, true);
          if (!entry) return 'skipped';
          // Retried by an earlier attempt of this very call: counted as what that attempt made of it, not again.
          if (input.bulkId !== undefined && entry.bulk_action_id === input.bulkId) return outcomeOf(entry);
          if (entry.status === 'resolved' || entry.status === 'discarded') return 'skipped';
          if (!input.force && (entry.status === 'parked' || entry.next_attempt_at.getTime() > input.now))
            return 'skipped';
          if (input.bulkId !== undefined) await markDlqBulkAction(client, entry.id, input.bulkId);
          const result = await journalDeadLetter(client, entry, parseOptions);
          if ('error' in result) {
            const failed = await fail(client, entry, input.now, result.error);
            if (failed === 'parked') {
              const bulk_action_id = input.bulkId ?? entry.bulk_action_id;
              parked = { ...entry, last_error: result.error, attempts: entry.attempts + 1, bulk_action_id };
            }
            return failed;
          }
          await markDlqResolved(client, entry.id, result.journalId, new Date(input.now));
          return 'resolved';
        });
        totals[outcome] += 1;
        if (outcome !== 'skipped') metrics.dlqRetry.inc({ result: outcome });
        // After the commit: the notification reports a parked entry that is parked.
        if (parked) await notify(parkedNotification(parked));
      }
      return totals;
    },
  };

  async function fail(db: Queryable, entry: DlqRecord, now: number, error: string): Promise<DlqRetryOutcome> {
    const attempt = entry.attempts + 1;
    const park = attempt >= maxAttempts;
    await markDlqFailed(db, entry.id, error, new Date(now + baseDelayMs * 2 ** (attempt - 1)), park);
    log.warn({ dlq_id: entry.id, attempt, park }, `DLQ retry failed: ${error}`);
    return park ? 'parked' : 'retrying';
  }
}

/**
 * dlq_parked: one per entry and attempt (an entry unparked and parked again is told again). A bulk unpark starts the
 * attempts over, so the key also names the last bulk action on the entry.
 */
function parkedNotification(entry: DlqRecord): Notification {
  return {
    kind: 'dlq_parked',
    key: [entry.id, entry.attempts, entry.bulk_action_id].filter((part) => part !== null).join('-'),
    data: {
      dlq_id: entry.id,
      topic: entry.topic,
      tenant_id: entry.tenant_id,
      reason: entry.reason,
      attempts: entry.attempts,
      last_error: entry.last_error,
      received_at: entry.received_at,
    },
  };
}

/** What an entry's earlier retry made of it. */
function outcomeOf(entry: DlqRecord): DlqRetryOutcome {
  return entry.status === 'resolved' || entry.status === 'retrying' || entry.status === 'parked'
    ? entry.status
    : 'skipped';
}

import type { ActivityOptions } from '@temporalio/workflow';
import { PERMANENT_FAILURES } from '../journal/kinds';

// A failure an activity throws as non-retryable is never retried, whatever the policy below lists: among them every
// statement Postgres refuses for the data it reads (UnprocessableData, worker/deterministic-failures.ts), so that no
// policy here, even one without maximumAttempts, retries such a statement forever.

/**
 * Short publishing activities: exponential backoff up to a minute, 25 attempts. An attempt lasts long enough for a
 * send's commit to settle inside it (COMMIT_PHASE_MS, shared/kafka.ts; worker/send-attempt.ts): a commit answered
 * after its attempt's end would land beside its retry's send.
 */
export const publishOptions: ActivityOptions = {
  startToCloseTimeout: '2m',
  retry: {
    initialInterval: '1s',
    backoffCoefficient: 2,
    maximumInterval: '1m',
    maximumAttempts: 25,
    nonRetryableErrorTypes: [...PERMANENT_FAILURES],
  },
};

/**
 * Page activities of long replays: they heartbeat after every page, and keep retrying (backoff up to 10 min) until
 * Kafka is back. The heartbeat timeout bounds one page (a read and a send), not a whole chunk of pages; a chunk's
 * time budget (CHUNK_BUDGET_MS) stays far under the start-to-close timeout. A page is sent only while the server has
 * confirmed its attempt a commit phase of life after its produce (SEND_LEASE_MS, 75 s; worker/attempt-lease.ts): the
 * heartbeat timeout exceeds that by the lease's margin and the heartbeat throttle (at least 81 s).
 */
export const pageOptions: ActivityOptions = {
  startToCloseTimeout: '10m',
  heartbeatTimeout: '90s',
  retry: {
    initialInterval: '1s',
    backoffCoefficient: 2,
    maximumInterval: '10m',
    nonRetryableErrorTypes: [...PERMANENT_FAILURES],
  },
};

/** Bookkeeping (audit rows): cheap and idempotent. Also the options of the audit writes run as local activities. */
export const auditOptions: ActivityOptions = {
  startToCloseTimeout: '15s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s' },
};

/** Asking closed child workflows for their counts (each answer bounded in the activity): a few tries, then done. */
export const shardCountOptions: ActivityOptions = {
  startToCloseTimeout: '1m',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumAttempts: 3 },
};

/**
 * Journal maintenance (archive, verify, drop): long reads and writes that heartbeat every few thousand rows, retried
 * with backoff until the archive store or Postgres is back. A segment that does not match what it should remove
 * (ArchiveMismatch) is not retried: it waits for an operator, and nothing is removed.
 */
export const maintenanceOptions: ActivityOptions = {
  startToCloseTimeout: '2h',
  heartbeatTimeout: '2m',
  retry: {
    initialInterval: '5s',
    backoffCoefficient: 2,
    maximumInterval: '10m',
    maximumAttempts: 20,
    nonRetryableErrorTypes: ['ArchiveMismatch', 'ArchiveVerifyError'],
  },
};

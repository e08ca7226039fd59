import type { Queryable } from '../repository/queryable';
import { recordRequested, type AuditStart } from '../repository/replay-audit';
/**
 * Keyset pages: routes ask the repository for limit + 1 rows (newest first); the extra row only says that another
 * page exists, and the last id shown is the cursor for it.
 */
export function keysetPage<T extends { id: number }>(
  rows: T[],
  limit: number,
): { items: T[]; next_cursor: number | null } {
  const items = rows.slice(0, limit);
  return { items, next_cursor: rows.length > limit ? items[items.length - 1].id : null };
}

/**
 * The promise's value, or undefined when it has not settled within `ms` or once `signal` aborts, whichever comes first
 * (the caller answers 202 then; the promise is left to itself).
 */
export async function within<T>(promise: Promise<T>, ms: number, signal?: AbortSignal): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  let onAbort = () => {};
  const ended = new Promise<undefined>((resolve) => {
    onAbort = () => resolve(undefined);
    timer = setTimeout(onAbort, ms);
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([promise, ended]);
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  }
}

/** The audit row of a workflow just started, so the replay routes know it as ours before its first activity. */
export function recordStarted(
  db: Queryable,
  handle: { workflowId: string },
  audit: Omit<AuditStart, 'workflowId' | 'runId'>,
): Promise<void> {
  return recordRequested(db, {
    workflowId: handle.workflowId,
    // A handle found again by Idempotency-Key has no run id: the workflow's own audit write supplies it.
    runId: (handle as { firstExecutionRunId?: string }).firstExecutionRunId,
    ...audit,
  });
}

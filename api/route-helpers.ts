import type { FastifyReply } from 'fastify';
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
 * The audit row of a workflow just started, so the replay routes know it as ours before its first activity. Not
 * waited for once the API began to close (`reply.unlessClosing`): the request is decided, and the workflow writes the
 * row itself.
 */
export async function recordStarted(
  reply: FastifyReply,
  db: Queryable,
  handle: { workflowId: string },
  audit: Omit<AuditStart, 'workflowId' | 'runId'>,
): Promise<void> {
  await reply.unlessClosing(
    recordRequested(db, {
      workflowId: handle.workflowId,
      // A handle found again by Idempotency-Key has no run id: the workflow's own audit write supplies it.
      runId: (handle as { firstExecutionRunId?: string }).firstExecutionRunId,
      ...audit,
    }),
  );
}

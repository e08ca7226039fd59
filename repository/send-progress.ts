import { REFUSAL_KINDS, type RefusedIds, type SendDecision } from '../journal/kinds';
import type { Queryable } from './queryable';

/**
 * send_progress and send_progress_sent (sql/023, 024): the progress of a per_key replay activity, made durable before
 * each wave it sends (activities/durable-progress.ts), read by its retry. Every statement that changes an activity's
 * rows is one statement, fenced by the writing attempt's `fence` (its scheduled time): a statement that commits late
 * (its attempt timed out waiting for it) changes nothing once a later attempt has claimed the row.
 */

/** The activity a row belongs to, and the attempt writing it (`fence`: its scheduled time, ms). */
export interface SendProgressKey {
  workflowId: string;
  runId: string;
  activityId: string;
  fence: number;
}

/**
 * What an activity's row holds: its page, its progress besides the ids, and the page's ids sent and refused (by the
 * refusal's kind).
 */
export interface StoredProgress {
  page: number;
  details: Record<string, unknown>;
  sent: number[];
  refused: RefusedIds;
}

/** A row's page before its first page write: claimed, nothing written. */
const NO_PAGE = -1;

/** Closed rows (their activity over) are deleted this long after they were closed. */
export const SEND_PROGRESS_KEPT_DAYS = 7;

/**
 * Open rows nobody claimed for this long are deleted too: their workflow ended mid-activity (cancelled, terminated), or
 * its activity has not been attempted for that long (paused, or no worker running): it then resumes from its
 * heartbeat details alone.
 */
export const SEND_PROGRESS_OPEN_DAYS = 30;

/** Rows deleted per claim: the sweep stays a small statement. */
const SWEEP_LIMIT = 100;

/**
 * Claims the activity's row for this attempt (its fence), as the attempt resumes: from now on an earlier attempt's
 * writes are refused. Closes the rows of the workflow's earlier activities (they run one after another: scheduled
 * before this one, they are over), emptied and kept as fences against their stale attempts. `stale`: a later attempt
 * of this activity, or a later activity of the workflow, has claimed (this attempt must send nothing); else what the
 * row holds, if anything was written.
 */
export async function claimSendProgress(
  db: Queryable,
  key: SendProgressKey,
): Promise<{ stale: true } | { stale: false; stored?: StoredProgress }> {
  const { rows } = await db.query<{ page: number; details: Record<string, unknown> }>(
    `WITH later AS (
       SELECT 1 FROM send_progress
        WHERE workflow_id = $3 AND fence > $4 AND NOT (run_id = $1 AND activity_id = $2)
        LIMIT 1),
     claimed AS (
       INSERT INTO send_progress AS p (run_id, activity_id, workflow_id, fence, page, details)
       SELECT $1, $2, $3, $4, ${NO_PAGE}, '{}' WHERE NOT EXISTS (SELECT 1 FROM later)
       ON CONFLICT (run_id, activity_id) DO UPDATE SET fence = EXCLUDED.fence, updated_at = now()
         WHERE NOT p.closed AND p.fence <= EXCLUDED.fence
       RETURNING p.page, p.details),
     closed AS (
       UPDATE send_progress SET closed = true, details = '{}', updated_at = now()
        WHERE workflow_id = $3 AND fence < $4 AND NOT (run_id = $1 AND activity_id = $2) AND NOT closed
          AND EXISTS (SELECT 1 FROM claimed)
        RETURNING run_id, activity_id),
     emptied AS (
       DELETE FROM send_progress_sent s USING closed c WHERE s.run_id = c.run_id AND s.activity_id = c.activity_id)
     SELECT c.page, c.details FROM claimed c`,
    [key.runId, key.activityId, key.workflowId, key.fence],
  );
  const row = rows[0];
  if (!row) return { stale: true };
  if (row.page === NO_PAGE) return { stale: false };
  // The ids, read by a statement of their own once the claim has committed: the claim's upsert waits for an earlier
  // attempt's statement holding the row (a page write, ids added) and then updates the row as that statement left it,
  // but a read in the same statement sees only its snapshot, taken before that statement committed: the page's
  // refusals, or the wave's ids, would be missing (test/integration/attack57-claim-misses-refusals-committed-under-it,
  // attack58-stale-ids-commit-after-claim). No earlier attempt's statement can add ids from now on.
  const { rows: decisions } = await db.query<{ ids: Partial<Record<SendDecision, number[]>> }>(
    `SELECT coalesce(jsonb_object_agg(d.kind, d.ids), '{}') AS ids
       FROM (SELECT s.kind, array_agg(DISTINCT i ORDER BY i) AS ids
               FROM send_progress_sent s, unnest(s.ids) AS i
              WHERE s.run_id = $1 AND s.activity_id = $2 AND s.page = $3
              GROUP BY s.kind) d`,
    [key.runId, key.activityId, row.page],
  );
  const { sent = [], ...decided } = decisions[0].ids;
  const refused: RefusedIds = {};
  for (const kind of REFUSAL_KINDS) if (decided[kind]) refused[kind] = decided[kind];
  return { stale: false, stored: { page: row.page, details: row.details, sent, refused } };
}

/**
 * Writes the activity's page and its progress besides the ids sent, adds ids of the page `refused` (decided as the
 * page begins, or as an attempt resumes it: a page write comes first in both), and deletes the ids of its other pages,
 * in one statement, if the row is still this attempt's (claimed by it, not closed). True when written.
 */
export async function writeSendPage(
  db: Queryable,
  key: SendProgressKey,
  page: number,
  details: Record<string, unknown>,
  refused: RefusedIds = {},
): Promise<boolean> {
  const pairs = REFUSAL_KINDS.flatMap((kind) => (refused[kind] ?? []).map((id) => [kind, id] as const));
  const { rows } = await db.query<{ n: number }>(
    `WITH written AS (
       UPDATE send_progress SET page = $4, details = $5, updated_at = now()
        WHERE run_id = $1 AND activity_id = $2 AND fence = $3 AND NOT closed
        RETURNING run_id, activity_id),
     dropped AS (
       DELETE FROM send_progress_sent s USING written w
        WHERE s.run_id = w.run_id AND s.activity_id = w.activity_id AND s.page <> $4),
     refused AS (
       INSERT INTO send_progress_sent (run_id, activity_id, page, kind, ids)
       SELECT w.run_id, w.activity_id, $4, d.kind, array_agg(d.id)
         FROM written w, unnest($6::text[], $7::bigint[]) AS d(kind, id)
        GROUP BY w.run_id, w.activity_id, d.kind)
     SELECT count(*)::int AS n FROM written`,
    [
      key.runId,
      key.activityId,
      key.fence,
      page,
      JSON.stringify(details),
      pairs.map(([kind]) => kind),
      pairs.map(([, id]) => id),
    ],
  );
  return rows[0].n > 0;
}

/**
 * Adds ids of the page sent, if the row is still this attempt's, on that page. True when added. The row is locked
 * (FOR SHARE) for the check: a later attempt's claim waits for the insert to commit, and an insert that waited for a
 * claim sees its fence and adds nothing; a plain read would let the insert commit after the claim, which would resume
 * without these ids while this attempt sent its next wave (attack58-stale-ids-commit-after-claim).
 */
export async function addSentIds(db: Queryable, key: SendProgressKey, page: number, ids: number[]): Promise<boolean> {
  const { rowCount } = await db.query(
    `INSERT INTO send_progress_sent (run_id, activity_id, page, ids)
     SELECT run_id, activity_id, page, $5::bigint[] FROM send_progress
      WHERE run_id = $1 AND activity_id = $2 AND fence = $3 AND page = $4 AND NOT closed
        FOR SHARE`,
    [key.runId, key.activityId, key.fence, page, ids],
  );
  return (rowCount ?? 0) > 0;
}

/**
 * Deletes up to SWEEP_LIMIT rows closed SEND_PROGRESS_KEPT_DAYS ago or open and unclaimed for SEND_PROGRESS_OPEN_DAYS
 * (their ids with them).
 */
export async function sweepSendProgress(db: Queryable): Promise<void> {
  await db.query(
    `DELETE FROM send_progress WHERE ctid IN (
       SELECT ctid FROM send_progress
        WHERE (closed AND updated_at < now() - $1 * interval '1 day') OR updated_at < now() - $2 * interval '1 day'
        LIMIT ${SWEEP_LIMIT})`,
    [SEND_PROGRESS_KEPT_DAYS, SEND_PROGRESS_OPEN_DAYS],
  );
}

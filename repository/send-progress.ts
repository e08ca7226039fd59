import type { Queryable } from './queryable';

/**
 * send_progress and send_progress_sent (sql/023): the progress of a per_key replay activity, made durable before each
 * wave it sends (activities/ordered-publish.ts durableProgress), read by its retry.
 */

/** The activity a row belongs to, and the attempt writing it (`fence`: its scheduled time, ms). */
export interface SendProgressKey {
  workflowId: string;
  runId: string;
  activityId: string;
  fence: number;
}

/** What an activity's row holds: its page, its progress besides the ids sent, and the page's ids sent. */
export interface StoredProgress {
  page: number;
  details: Record<string, unknown>;
  sent: number[];
}

/**
 * Rows nobody has written or resumed from for this long belong to activities long over: every attempt of a live one
 * resumes from its row (and touches it) as it starts, and page activities are retried at least every 10 minutes.
 */
export const SEND_PROGRESS_KEPT_DAYS = 7;

/** Stale rows deleted per first write of an attempt: the sweep stays a small statement. */
const SWEEP_LIMIT = 100;

/**
 * The activity's progress as its attempts last wrote it (touching the row: a resumed row is not swept), or undefined
 * (none, or its activity is over).
 */
export async function resumeSendProgress(db: Queryable, key: SendProgressKey): Promise<StoredProgress | undefined> {
  const { rows } = await db.query<{ page: number; details: Record<string, unknown>; sent: string[] }>(
    `WITH touched AS (
       UPDATE send_progress SET updated_at = now()
        WHERE run_id = $1 AND activity_id = $2 AND NOT closed
        RETURNING page, details)
     SELECT t.page, t.details,
            coalesce((SELECT array_agg(DISTINCT i ORDER BY i)
                        FROM send_progress_sent s, unnest(s.ids) AS i
                       WHERE s.run_id = $1 AND s.activity_id = $2 AND s.page = t.page), '{}') AS sent
       FROM touched t`,
    [key.runId, key.activityId],
  );
  const row = rows[0];
  return row && { page: row.page, details: row.details, sent: row.sent.map(Number) };
}

/**
 * Writes the activity's page and progress besides the ids sent, and deletes the ids of its other pages, unless a later
 * attempt has written (a stale attempt, cut off from Temporal, may still be running) or the activity is over. True
 * when written.
 */
export async function writeSendPage(
  db: Queryable,
  key: SendProgressKey,
  page: number,
  details: Record<string, unknown>,
): Promise<boolean> {
  const { rowCount } = await db.query(
    `INSERT INTO send_progress (run_id, activity_id, workflow_id, fence, page, details)
     VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (run_id, activity_id) DO UPDATE
       SET fence = EXCLUDED.fence, page = EXCLUDED.page, details = EXCLUDED.details, updated_at = now()
       WHERE NOT send_progress.closed AND send_progress.fence <= EXCLUDED.fence`,
    [key.runId, key.activityId, key.workflowId, key.fence, page, JSON.stringify(details)],
  );
  if (!rowCount) return false;
  await db.query('DELETE FROM send_progress_sent WHERE run_id = $1 AND activity_id = $2 AND page <> $3', [
    key.runId,
    key.activityId,
    page,
  ]);
  return true;
}

/** Adds ids of the page sent, if the row is still this attempt's on that page. True when added. */
export async function addSentIds(db: Queryable, key: SendProgressKey, page: number, ids: number[]): Promise<boolean> {
  const { rowCount } = await db.query(
    `INSERT INTO send_progress_sent (run_id, activity_id, page, ids)
     SELECT run_id, activity_id, page, $5::bigint[] FROM send_progress
      WHERE run_id = $1 AND activity_id = $2 AND fence = $3 AND page = $4 AND NOT closed`,
    [key.runId, key.activityId, key.fence, page, ids],
  );
  return (rowCount ?? 0) > 0;
}

/**
 * Closes the rows of the workflow's other activities (its activities send one after another: the others are over),
 * emptied and kept as fences against their stale attempts, and deletes up to SWEEP_LIMIT rows nobody wrote or resumed
 * from for SEND_PROGRESS_KEPT_DAYS.
 */
export async function closeOtherSendProgress(db: Queryable, key: SendProgressKey): Promise<void> {
  await db.query(
    `WITH closed AS (
       UPDATE send_progress SET closed = true, details = '{}', updated_at = now()
        WHERE workflow_id = $1 AND NOT (run_id = $2 AND activity_id = $3) AND NOT closed
        RETURNING run_id, activity_id)
     DELETE FROM send_progress_sent s USING closed c WHERE s.run_id = c.run_id AND s.activity_id = c.activity_id`,
    [key.workflowId, key.runId, key.activityId],
  );
  await db.query(
    `DELETE FROM send_progress WHERE ctid IN (
       SELECT ctid FROM send_progress WHERE updated_at < now() - $1 * interval '1 day' LIMIT ${SWEEP_LIMIT})`,
    [SEND_PROGRESS_KEPT_DAYS],
  );
}

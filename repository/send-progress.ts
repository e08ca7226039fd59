import type { Queryable } from './queryable';

/**
 * send_progress (sql/023): the progress of a per_key replay activity, written before each wave it sends
 * (activities/ordered-publish.ts durableProgress), read by its retry.
 */

/** The activity a row belongs to, and the attempt writing it. */
export interface SendProgressKey {
  workflowId: string;
  runId: string;
  activityId: string;
  attempt: number;
}

/** Rows nobody has written for this long belong to activities long over (a live one's every attempt writes). */
export const SEND_PROGRESS_KEPT_DAYS = 7;

/** Stale rows deleted per first write of an attempt: the sweep stays a small statement. */
const SWEEP_LIMIT = 100;

/** The activity's progress as its attempts last wrote it, or undefined. */
export async function readSendProgress(db: Queryable, key: SendProgressKey): Promise<unknown> {
  const { rows } = await db.query<{ details: unknown }>(
    'SELECT details FROM send_progress WHERE run_id = $1 AND activity_id = $2',
    [key.runId, key.activityId],
  );
  return rows[0]?.details;
}

/**
 * Writes the activity's progress unless a later attempt has written it (a stale attempt, cut off from Temporal, may
 * still be running). True when written.
 */
export async function writeSendProgress(db: Queryable, key: SendProgressKey, details: unknown): Promise<boolean> {
  const { rowCount } = await db.query(
    `INSERT INTO send_progress (workflow_id, run_id, activity_id, attempt, details)
     VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (run_id, activity_id) DO UPDATE
       SET attempt = EXCLUDED.attempt, details = EXCLUDED.details, updated_at = now()
       WHERE send_progress.attempt <= EXCLUDED.attempt`,
    [key.workflowId, key.runId, key.activityId, key.attempt, JSON.stringify(details)],
  );
  return (rowCount ?? 0) > 0;
}

/**
 * Deletes the rows of the workflow's other activities (its activities send one after another: the others are over)
 * and a few rows nobody has written for SEND_PROGRESS_KEPT_DAYS. Returns how many.
 */
export async function dropOtherSendProgress(db: Queryable, key: SendProgressKey): Promise<number> {
  const { rowCount } = await db.query(
    `DELETE FROM send_progress
      WHERE (workflow_id = $1 AND NOT (run_id = $2 AND activity_id = $3))
         OR ctid IN (SELECT ctid FROM send_progress
                      WHERE updated_at < now() - $4 * interval '1 day' LIMIT ${SWEEP_LIMIT})`,
    [key.workflowId, key.runId, key.activityId, SEND_PROGRESS_KEPT_DAYS],
  );
  return rowCount ?? 0;
}

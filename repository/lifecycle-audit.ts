import type { LifecycleKind, LifecycleStatus } from '../journal/kinds';
import type { Queryable } from './queryable';

export interface LifecycleAuditRow {
  id: number;
  workflow_id: string;
  kind: LifecycleKind;
  requested_by: string | null;
  status: LifecycleStatus;
  request: Record<string, unknown>;
  actions: Array<Record<string, unknown>>;
  error: string | null;
  started_at: Date;
  finished_at: Date | null;
}

/** A lifecycle workflow's audit row as it starts. */
export interface LifecycleAuditStart {
  workflowId: string;
  kind: LifecycleKind;
  requestedBy?: string;
  request?: Record<string, unknown>;
}

async function insertLifecycleAudit(db: Queryable, input: LifecycleAuditStart, onConflict: string): Promise<void> {
  await db.query(
    `INSERT INTO lifecycle_audit (workflow_id, kind, requested_by, request) VALUES ($1, $2, $3, $4)
     ON CONFLICT (workflow_id) ${onConflict}`,
    [input.workflowId, input.kind, input.requestedBy ?? null, JSON.stringify(input.request ?? {})],
  );
}

/** Records a lifecycle workflow's start (idempotent: an activity retry or a workflow retry finds its row). */
export async function startLifecycleAudit(db: Queryable, input: LifecycleAuditStart): Promise<void> {
  await insertLifecycleAudit(db, input, "DO UPDATE SET status = 'running', error = NULL, finished_at = NULL");
}

/** Appends what one step did. */
export async function appendLifecycleAction(
  db: Queryable,
  workflowId: string,
  action: Record<string, unknown>,
): Promise<void> {
  await db.query(
    `UPDATE lifecycle_audit SET actions = actions || jsonb_build_array($2::jsonb) WHERE workflow_id = $1`,
    [workflowId, JSON.stringify({ ...action, at: new Date().toISOString() })],
  );
}

export async function finishLifecycleAudit(
  db: Queryable,
  workflowId: string,
  status: Exclude<LifecycleStatus, 'running'>,
  error?: string,
): Promise<void> {
  await db.query('UPDATE lifecycle_audit SET status = $2, error = $3, finished_at = now() WHERE workflow_id = $1', [
    workflowId,
    status,
    error ?? null,
  ]);
}

export async function listLifecycleAudit(
  db: Queryable,
  kind: LifecycleKind,
  limit: number,
): Promise<LifecycleAuditRow[]> {
  const { rows } = await db.query<LifecycleAuditRow>(
    `SELECT id, workflow_id, kind, requested_by, status, request, actions, error, started_at, finished_at
       FROM lifecycle_audit WHERE kind = $1 ORDER BY id DESC LIMIT $2`,
    [kind, limit],
  );
  return rows;
}

/** Seconds since the epoch of the last completed maintenance run; 0 when there was none. */
export async function lastMaintenanceSuccess(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ t: number | null }>(
    `SELECT extract(epoch FROM max(finished_at))::float8 AS t FROM lifecycle_audit
      WHERE kind = 'maintenance' AND status = 'completed'`,
  );
  return rows[0].t ?? 0;
}

/** One lifecycle workflow's audit row by its workflow id (an erasure's status page). */
export async function getLifecycleAudit(db: Queryable, workflowId: string): Promise<LifecycleAuditRow | undefined> {
  const { rows } = await db.query<LifecycleAuditRow>(
    `SELECT id, workflow_id, kind, requested_by, status, request, actions, error, started_at, finished_at
       FROM lifecycle_audit WHERE workflow_id = $1`,
    [workflowId],
  );
  return rows[0];
}

/**
 * Records a lifecycle workflow just started by the API, unless its row is there already (the workflow may have written
 * it, or even finished, first): the status URL answers at once, and a finished row is never set back to running.
 */
export async function recordLifecycleRequested(db: Queryable, input: LifecycleAuditStart): Promise<void> {
  await insertLifecycleAudit(db, input, 'DO NOTHING');
}

/**
 * Erasures requested or running: maintenance archives nothing meanwhile (a segment could keep an erased row). With
 * `since`, also those that ended since then: an erasure that ran while a segment was being written.
 */
export async function erasuresInProgress(db: Queryable, since?: Date): Promise<string[]> {
  const { rows } = await db.query<{ workflow_id: string }>(
    `SELECT workflow_id FROM lifecycle_audit
      WHERE kind = 'erasure' AND started_at > now() - interval '7 days'
        AND (status = 'running' OR finished_at >= $1)`,
    [since ?? null],
  );
  return rows.map((r) => r.workflow_id);
}

/**
 * Whether a maintenance run recorded this very write of the segment (its manifest's created_at and file sha256) as
 * archived: a run does so only after the segment passed its erasure check (no erasure ran unseen while it was
 * written). A record of the name, or of a file with the same bytes written before, says nothing of this write.
 */
export async function segmentArchiveRecorded(
  db: Queryable,
  manifest: { segment: string; created_at: string; file: { sha256: string } },
): Promise<boolean> {
  const { rows } = await db.query(
    `SELECT 1 FROM lifecycle_audit
      WHERE kind = 'maintenance'
        AND actions @> jsonb_build_array(jsonb_build_object('action', 'segment_archived', 'segment', $1::text,
                                                            'sha256', $2::text, 'manifest_created_at', $3::text))
      LIMIT 1`,
    [manifest.segment, manifest.file.sha256, manifest.created_at],
  );
  return rows.length > 0;
}

/** The database's clock now (not the transaction's start): a point every later snapshot comes after. */
export async function databaseClock(db: Queryable): Promise<Date> {
  const { rows } = await db.query<{ now: Date }>('SELECT clock_timestamp() AS now');
  return rows[0].now;
}

import type { AuditStatus, ReplayKind } from '../journal/kinds';
import type { Queryable } from './queryable';

export type { AuditStatus, ReplayKind } from '../journal/kinds';

export interface AuditStart {
  workflowId: string;
  runId: string;
  kind: ReplayKind;
  source: string;
  requestedBy?: string;
  tenantId?: string;
  eventId?: number;
  filter?: Record<string, unknown>;
}

export interface AuditFinish {
  workflowId: string;
  status: Exclude<AuditStatus, 'requested' | 'running'>;
  matched: number;
  published: number;
  failed: number;
  error?: string;
}

export interface AuditRow {
  id: number;
  workflow_id: string;
  run_id: string | null;
  kind: ReplayKind;
  source: string;
  requested_by: string | null;
  tenant_id: string | null;
  event_id: number | null;
  filter: Record<string, unknown>;
  status: AuditStatus;
  matched: number;
  published: number;
  failed: number;
  error: string | null;
  created_at: Date;
  finished_at: Date | null;
}

/**
 * Records that a workflow is running; idempotent for activity retries and continue-as-new runs. run_id stays the
 * chain's first run (the API's namespace boundary compares it with the described workflow's first run).
 */
export async function startAudit(db: Queryable, a: AuditStart): Promise<void> {
  await db.query(
    `INSERT INTO replay_audit (workflow_id, run_id, kind, source, requested_by, tenant_id, event_id, filter, status)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'running')
     ON CONFLICT (workflow_id) DO UPDATE SET run_id = COALESCE(replay_audit.run_id, EXCLUDED.run_id), status = 'running'
       WHERE replay_audit.finished_at IS NULL`,
    auditValues(a),
  );
}

/** What finishAudit tells about the workflow that ended. */
export interface FinishedAudit {
  kind: ReplayKind;
  /** Since it started (the duration histogram). */
  seconds: number;
  source: string;
  requested_by: string | null;
  tenant_id: string | null;
  dry_run: boolean;
}

/** Records how a workflow ended; returns what the metrics and the notification of its end need. */
export async function finishAudit(db: Queryable, f: AuditFinish): Promise<FinishedAudit | undefined> {
  const { rows } = await db.query<FinishedAudit>(
    `UPDATE replay_audit SET status = $2, matched = $3, published = $4, failed = $5, error = $6, finished_at = now()
      WHERE workflow_id = $1
      RETURNING kind, extract(epoch FROM now() - created_at)::float8 AS seconds, source, requested_by, tenant_id,
                coalesce(filter->>'dry_run' = 'true', false) AS dry_run`,
    [f.workflowId, f.status, f.matched, f.published, f.failed, f.error ?? null],
  );
  return rows[0];
}

export interface AuditQuery {
  kind?: ReplayKind;
  status?: AuditStatus;
  tenantId?: string;
  before?: number;
  limit: number;
}

export async function listAudits(db: Queryable, q: AuditQuery): Promise<AuditRow[]> {
  const values: unknown[] = [];
  const clauses: string[] = [];
  if (q.kind) clauses.push(`kind = $${values.push(q.kind)}`);
  if (q.status) clauses.push(`status = $${values.push(q.status)}`);
  if (q.tenantId) clauses.push(`tenant_id = $${values.push(q.tenantId)}`);
  if (q.before !== undefined) clauses.push(`id < $${values.push(q.before)}`);
  const where = clauses.length ? `WHERE ${clauses.join(' AND ')}` : '';
  const { rows } = await db.query<AuditRow>(
    `SELECT * FROM replay_audit ${where} ORDER BY id DESC LIMIT $${values.push(q.limit)}`,
    values,
  );
  return rows;
}

export async function getAudit(db: Queryable, workflowId: string): Promise<AuditRow | undefined> {
  const { rows } = await db.query<AuditRow>('SELECT * FROM replay_audit WHERE workflow_id = $1', [workflowId]);
  return rows[0];
}

/**
 * Records a workflow the API has just started, before its first activity runs: from this moment the replay routes
 * recognise it as this service's. Never overwrites the row the workflow itself may already have written.
 */
export async function recordRequested(db: Queryable, a: Omit<AuditStart, 'runId'> & { runId?: string }): Promise<void> {
  await db.query(
    `INSERT INTO replay_audit (workflow_id, run_id, kind, source, requested_by, tenant_id, event_id, filter, status)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'requested')
     ON CONFLICT (workflow_id) DO NOTHING`,
    auditValues(a),
  );
}

/** Column values of a new audit row, in the order both inserts list them. */
function auditValues(a: Omit<AuditStart, 'runId'> & { runId?: string }): unknown[] {
  return [
    a.workflowId,
    a.runId ?? null,
    a.kind,
    a.source,
    a.requestedBy ?? null,
    a.tenantId ?? null,
    a.eventId ?? null,
    a.filter ?? {},
  ];
}

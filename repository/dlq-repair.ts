import type { DlqRepairOutcome, DlqRepairStatus } from '../journal/kinds';
import type { Queryable } from './queryable';

/** A repair as the API records it when it starts the workflow. */
export interface NewRepair {
  /** Also the workflow id. */
  id: string;
  requestedBy: string;
  tenantId?: string;
  edit: object;
  selection: object;
  reason?: string;
}

export interface RepairRow {
  id: string;
  requested_by: string;
  tenant_id: string | null;
  edit: Record<string, unknown>;
  selection: Record<string, unknown>;
  reason: string | null;
  status: DlqRepairStatus;
  error: string | null;
  created_at: Date;
  finished_at: Date | null;
}

/** What a repair did to one entry. */
export interface RepairEntryOutcome {
  dlq_id: number;
  outcome: DlqRepairOutcome;
  journal_id: number | null;
  error: string | null;
}

/** Records a repair as its workflow starts (idempotent: the activity may be retried). */
export async function insertRepair(db: Queryable, r: NewRepair): Promise<void> {
  await db.query(
    `INSERT INTO dlq_repairs (id, requested_by, tenant_id, edit, selection, reason)
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING`,
    [r.id, r.requestedBy, r.tenantId ?? null, r.edit, r.selection, r.reason ?? null],
  );
}

/**
 * Records what a repair did to one entry, inside the transaction that did it. False when it was already recorded
 * (the same repair came back to the entry: an activity retried).
 */
export async function recordRepairOutcome(
  db: Queryable,
  repairId: string,
  o: Omit<RepairEntryOutcome, 'journal_id' | 'error'> & { journal_id?: number; error?: string },
): Promise<boolean> {
  const { rowCount } = await db.query(
    `INSERT INTO dlq_repair_entries (repair_id, dlq_id, outcome, journal_id, error) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (repair_id, dlq_id) DO NOTHING`,
    [repairId, o.dlq_id, o.outcome, o.journal_id ?? null, o.error ?? null],
  );
  return rowCount === 1;
}

/** Marks how a repair ended (a retried call changes nothing once it has ended). */
export async function finishRepair(
  db: Queryable,
  id: string,
  status: Exclude<DlqRepairStatus, 'running'>,
  error?: string,
): Promise<void> {
  await db.query(
    `UPDATE dlq_repairs SET status = $2, error = $3, finished_at = now() WHERE id = $1 AND finished_at IS NULL`,
    [id, status, error ?? null],
  );
}

export async function getRepair(db: Queryable, id: string): Promise<RepairRow | undefined> {
  const { rows } = await db.query<RepairRow>('SELECT * FROM dlq_repairs WHERE id = $1', [id]);
  return rows[0];
}

/** Every entry outcome of a repair, by entry id. */
export async function repairOutcomes(db: Queryable, id: string): Promise<RepairEntryOutcome[]> {
  const { rows } = await db.query<RepairEntryOutcome>(
    'SELECT dlq_id, outcome, journal_id, error FROM dlq_repair_entries WHERE repair_id = $1 ORDER BY dlq_id',
    [id],
  );
  return rows;
}

/** Outcome counts of a repair. */
export async function repairCounts(db: Queryable, id: string): Promise<Record<DlqRepairOutcome, number>> {
  const { rows } = await db.query<{ outcome: DlqRepairOutcome; n: number }>(
    'SELECT outcome, count(*)::int AS n FROM dlq_repair_entries WHERE repair_id = $1 GROUP BY outcome',
    [id],
  );
  const counts: Record<DlqRepairOutcome, number> = { journaled: 0, invalid: 0, skipped: 0 };
  for (const { outcome, n } of rows) counts[outcome] = n;
  return counts;
}

/**
 * For each JSON text, whether JavaScript's JSON.parse keeps its value (`reparsed`, its JSON.stringify): jsonb compares
 * numbers by value, so a number JavaScript rounds (over 15 digits, 1e400) makes them differ. NULL when jsonb cannot
 * read the text at all (it refuses \u0000): the journal would refuse it too.
 */
export async function jsonKeptByJs(db: Queryable, texts: string[], reparsed: string[]): Promise<Array<boolean | null>> {
  if (texts.length === 0) return [];
  const { rows } = await db.query<{ kept: boolean | null }>(
    `SELECT CASE WHEN strpos(t, '\\u0000') > 0 THEN NULL ELSE t::jsonb = r::jsonb END AS kept
       FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(t, r, n) ORDER BY n`,
    [texts, reparsed],
  );
  return rows.map((r) => r.kept);
}

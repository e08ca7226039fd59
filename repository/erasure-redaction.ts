import type { Queryable } from './queryable';

/**
 * Where operators' own actions can hold a copy of an erased value, outside the journal and the DLQ rows an erasure
 * deletes: the audit of replays (a payload filter, a transform, an error), of DLQ repairs (the replacement value or
 * patch, the selection, the reason, an entry's error), a dead letter's discard reason. Each is kept as history with
 * the value replaced by '[erased]' (sql/016: erasure_redact for the JSON ones).
 */
const COPIES: Array<{ table: string; json: string[]; text: string[] }> = [
  { table: 'replay_audit', json: ['filter'], text: ['error'] },
  { table: 'dlq_repairs', json: ['edit', 'selection'], text: ['reason', 'error'] },
  { table: 'dlq_repair_entries', json: [], text: ['error'] },
  { table: 'event_dlq', json: [], text: ['discard_reason'] },
];

/** Redacts the value in every copy (COPIES), in the caller's transaction; returns how many rows changed. */
export async function redactOperatorCopies(db: Queryable, value: string): Promise<number> {
  // jsonb's text escapes a string's value as JSON.stringify does: the form a copy inside a JSON string has.
  const escaped = JSON.stringify(value).slice(1, -1);
  let changed = 0;
  for (const { table, json, text } of COPIES) {
    const holds = [
      ...json.map((c) => `strpos(${c}::text, $1) > 0 OR strpos(${c}::text, $2) > 0`),
      ...text.map((c) => `strpos(${c}, $1) > 0`),
    ];
    const set = [
      ...json.map((c) => `${c} = erasure_redact(${c}, $1)`),
      ...text.map((c) => `${c} = replace(${c}, $1, '[erased]')`),
    ];
    const result = await db.query(
      `UPDATE ${table} SET ${set.join(', ')} WHERE ${holds.join(' OR ')}`,
      json.length ? [value, escaped] : [value],
    );
    changed += result.rowCount ?? 0;
  }
  return changed;
}

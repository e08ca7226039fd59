import {
  setDlqErrorClasses,
  unclassifiedDlqEntries,
  type ClassifiedDlqEntry,
  type NewDlqEntry,
} from '../repository/event-dlq';
import type { Queryable } from '../repository/queryable';
import { REJECT_REASONS } from './kinds';
import { SAFE_FORM_NOTE } from './outage';

/** Reasons whose error the parser writes from one template: the reason alone is their class (values only vary). */
const TEMPLATED_REASONS: ReadonlySet<string> = new Set(
  REJECT_REASONS.filter((r) => r !== 'db_error' && r !== 'parse_error'),
);

/** Condition names (PostgreSQL Appendix A) of the SQLSTATEs a journal insert meets; others read `sqlstate_<code>`. */
const SQLSTATE_NAMES: Record<string, string> = {
  '22001': 'string_data_right_truncation',
  '22003': 'numeric_value_out_of_range',
  '22021': 'character_not_in_repertoire',
  '22P02': 'invalid_text_representation',
  '22P05': 'untranslatable_character',
  '23502': 'not_null_violation',
  '23503': 'foreign_key_violation',
  '23505': 'unique_violation',
  '23514': 'check_violation',
  '23P01': 'exclusion_violation',
  '54000': 'program_limit_exceeded',
  '54001': 'statement_too_complex',
  '57014': 'query_canceled',
};

const MAX_CLASS_LENGTH = 200;

/**
 * A dead letter's error class: a stable fingerprint of its reason and error, the same for every entry that failed
 * the same way whatever the values involved, and different for different reasons (it starts with the reason).
 * - a reason the parser words from one template (`invalid_json`, `missing_tenant`, `too_large`, …): the reason;
 * - `db_error` with a SQLSTATE: `db_error:<condition>`, plus `:<constraint>` when the error names one (digits
 *   dropped: a partition's own index names the same constraint per month), e.g. `db_error:check_violation:bar_block`;
 * - anything else (`parse_error`, `unknown`, a db_error without SQLSTATE): `<reason>:<normalised message>`, where
 *   quoted values, numbers, ids and offsets are stripped.
 * The one place the class is computed: ingest writes it with each dead letter, migration 015's online step
 * classifies older rows with it.
 */
export function errorClassOf(reason: string, error: string): string {
  const message = error.split(`[${SAFE_FORM_NOTE}`)[0];
  if (TEMPLATED_REASONS.has(reason)) return reason;
  const sqlstate = /\(SQLSTATE ([0-9A-Z]{5})\)/.exec(message)?.[1];
  if (reason === 'db_error' && sqlstate) {
    const condition = SQLSTATE_NAMES[sqlstate] ?? `sqlstate_${sqlstate.toLowerCase()}`;
    const constraint = /constraint "([^"]*)"/.exec(message)?.[1];
    const named = constraint === undefined ? '' : slug(constraint.replace(/[0-9]+/g, ''));
    return bounded(named ? `db_error:${condition}:${named}` : `db_error:${condition}`);
  }
  return bounded(`${reason}:${slug(normalised(message)) || 'no_message'}`);
}

/** A dead letter with its error class, ready for insertDlqEntries. */
export function classified<T extends NewDlqEntry>(entry: T): T & ClassifiedDlqEntry {
  return { ...entry, errorClass: errorClassOf(entry.reason, entry.error) };
}

/** The online step of migration 015: classifies dead letters written before it, a page at a time. */
export async function classifyDeadLetters(db: Queryable, pageSize = 1000): Promise<number> {
  let total = 0;
  for (;;) {
    const page = await unclassifiedDlqEntries(db, pageSize);
    if (page.length === 0) return total;
    await setDlqErrorClasses(
      db,
      page.map((row) => ({ id: row.id, errorClass: errorClassOf(row.reason, row.error) })),
    );
    total += page.length;
  }
}

/** The message without what varies from one entry to the next: quoted values, ids, numbers, offsets. */
function normalised(message: string): string {
  return message
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, ' ')
    .replace(/\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b/gi, ' ')
    .replace(/\b(?:0x)?[0-9a-f]*[0-9][0-9a-f]*\b/gi, ' ')
    .replace(/[+-]?[0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?/gi, ' ');
}

function slug(text: string): string {
  return text
    .toLowerCase()
    .replace(/[^a-z_]+/g, '_')
    .replace(/_+/g, '_')
    .replace(/^_|_$/g, '');
}

function bounded(errorClass: string): string {
  return errorClass.length > MAX_CLASS_LENGTH ? errorClass.slice(0, MAX_CLASS_LENGTH).replace(/_$/, '') : errorClass;
}

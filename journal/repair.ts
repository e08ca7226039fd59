import { isDeepStrictEqual } from 'node:util';
import { applyPatch, createPatch, type Operation } from 'rfc6902';
import type { DlqRecord } from '../repository/event-dlq';
import type { NewJournalEntry } from '../repository/event-journal';
import { jsonKeptByJs } from '../repository/dlq-repair';
import type { Queryable } from '../repository/queryable';
import type { Pool } from '../shared/db';
import { appendOne, trialJournaling } from './append';
import { deadLetterJournalEntry, deadLetterRecord, deadLetterValue } from './dead-letter';
import { LINEAGE_FIELDS } from './kinds';
import { UNSAFE_TOKENS } from './transform';
import { withRepairLineage } from './lineage';
import { parseRecord, type ParseOptions } from './record';

export type { Operation } from 'rfc6902';

/** What an operator changes in a dead letter's value: a JSON Patch (RFC 6902), or the whole value. */
export type RepairEdit = { patch: Operation[] } | { value: Record<string, unknown> };

export interface RepairContext {
  /** The repair's id: the journaled events' _repair_id. */
  repairId: string;
  parse: ParseOptions;
  /** The tenant the requesting token is scoped to: the repaired event must belong to it. Unscoped: any tenant. */
  tenantScope?: string;
}

/** A dead letter with the edit applied, and whether the result passes the consumer's parser. */
export interface RepairCheck {
  dlqId: number;
  /** The dead letter's value as JSON; null when it is not JSON (then only a replacement value can repair it). */
  before: unknown;
  after: Record<string, unknown> | null;
  /** before → after as JSON Patch operations (what the edit effectively changes). */
  diff: Operation[];
  /** The journal entry the repaired record is (lineage included), when it passes; else `error` says why not. */
  entry?: NewJournalEntry;
  error?: string;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The edit applied to a document, atomically (any failing operation fails the edit, and the document is never
 * changed in place). Refused: an operation on the whole document or through `__proto__`, a result that is not a JSON
 * object, and any change to a lineage field (journal/kinds.ts LINEAGE_FIELDS), which only this service writes.
 */
export function editDocument(
  before: unknown,
  edit: RepairEdit,
): { after: Record<string, unknown> } | { error: string } {
  let after: unknown;
  if ('value' in edit) {
    after = edit.value;
  } else {
    if (before === undefined) {
      return { error: "The dead letter's value is not JSON, so a patch has nothing to apply to; send a value" };
    }
    const refused = edit.patch.map(refusedOperation).find((e) => e !== undefined);
    if (refused) return { error: refused };
    const applied = applyAll(before, edit.patch);
    if ('error' in applied) return applied;
    after = applied.after;
  }
  if (!isObject(after)) return { error: 'The repaired value must be a JSON object' };
  const own = (doc: unknown, field: string) => (isObject(doc) && Object.hasOwn(doc, field) ? doc[field] : undefined);
  const touched = LINEAGE_FIELDS.find((f) => !isDeepStrictEqual(own(before, f), own(after, f)));
  if (touched) return { error: `${touched} is lineage, written by this service only: an edit may not change it` };
  return { after };
}

/**
 * The patch applied to a copy of the document made of prototype-less objects, so that no pointer can reach an
 * inherited member (toString, constructor); the result as plain JSON again. The library throws on some paths through
 * non-objects: that is the patch failing too.
 */
function applyAll(before: unknown, patch: Operation[]): { after: unknown } | { error: string } {
  const doc = bare(before);
  const ops = patch.map((op) => ('value' in op ? { ...op, value: bare(op.value) } : op));
  let failures: ReturnType<typeof applyPatch>;
  try {
    failures = applyPatch(doc, ops);
  } catch (err) {
    return { error: `The patch cannot be applied: ${(err as Error).message}` };
  }
  const failed = failures.findIndex((f) => f !== null);
  if (failed >= 0) {
    const op = patch[failed];
    return { error: `Patch operation ${failed} (${op.op} ${op.path}) failed: ${failures[failed]!.message}` };
  }
  return { after: JSON.parse(JSON.stringify(doc)) as unknown };
}

/** A deep copy of a JSON value whose objects have no prototype. */
function bare(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(bare);
  if (typeof value !== 'object' || value === null) return value;
  const copy = Object.create(null) as Record<string, unknown>;
  for (const [k, v] of Object.entries(value)) copy[k] = bare(v);
  return copy;
}

function refusedOperation(op: Operation, index: number): string | undefined {
  const pointers = [op.path, 'from' in op ? op.from : undefined].filter((p): p is string => p !== undefined);
  if (pointers.includes('')) {
    return `Patch operation ${index} (${op.op}) targets the whole document; send the new document as value instead`;
  }
  // JSON.parse makes "__proto__" an own key, but a patch library may walk it as the prototype: never followed. The
  // library (rfc6902) skips these three tokens, so a pointer through one names its parent instead: a move from
  // "/constructor" would move the document into itself.
  const token = UNSAFE_TOKENS.find((t) => pointers.some((p) => p.split('/').includes(t)));
  if (token) {
    return `Patch operation ${index} (${op.op} ${op.path}) goes through ${token}, which a repair may not touch`;
  }
  return undefined;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The dead letter's value as JSON text and document, or undefined when it is not UTF-8 JSON. */
function beforeOf(entry: DlqRecord): { text: string; doc: unknown } | undefined {
  const bytes = deadLetterValue(entry);
  if (bytes === null) return undefined;
  try {
    const text = utf8.decode(bytes);
    return { text, doc: JSON.parse(text) as unknown };
  } catch {
    return undefined;
  }
}

/**
 * One dead letter with the edit applied, checked the way ingest checks a record: the repaired value (with its repair
 * lineage) goes through journal/record.ts with the dead letter's key, headers and timestamp. Pure.
 */
export function checkRepair(entry: DlqRecord, edit: RepairEdit, ctx: RepairContext): RepairCheck {
  const before = beforeOf(entry)?.doc;
  const edited = editDocument(before, edit);
  const shown = { dlqId: entry.id, before: before ?? null };
  if ('error' in edited) return { ...shown, after: null, diff: [], error: edited.error };
  const { after } = edited;
  const diff = before === undefined ? [{ op: 'add' as const, path: '', value: after }] : createPatch(before, after);
  const value = withRepairLineage(JSON.stringify(after), { dlqId: entry.id, repairId: ctx.repairId });
  const parsed = parseRecord(deadLetterRecord(entry, Buffer.from(value)), ctx.parse);
  if (!parsed.ok) return { ...shown, after, diff, error: parsed.dlq.error };
  const tenant = parsed.entry.tenantId;
  if (ctx.tenantScope !== undefined && tenant !== ctx.tenantScope) {
    return {
      ...shown,
      after,
      diff,
      error: `The repaired event would belong to tenant ${tenant}; this token may write tenant ${ctx.tenantScope} only`,
    };
  }
  return { ...shown, after, diff, entry: deadLetterJournalEntry(entry, parsed.entry) };
}

/**
 * checkRepair for several entries, plus what only Postgres can tell: whether a patched value keeps every number of
 * the dead letter's (JavaScript rounds numbers over 15 significant digits, and a patch goes through it). A dead letter
 * that would lose a digit is refused, naming why: a replacement value is the way to repair it.
 */
export async function checkRepairs(
  db: Queryable,
  entries: DlqRecord[],
  edit: RepairEdit,
  ctx: RepairContext,
): Promise<RepairCheck[]> {
  const checks = entries.map((entry) => checkRepair(entry, edit, ctx));
  if ('value' in edit) return checks;
  const patched = checks.flatMap((check, i) => {
    const before = check.entry ? beforeOf(entries[i]) : undefined;
    return before ? [{ check, text: before.text }] : [];
  });
  const kept = await jsonKeptByJs(
    db,
    patched.map((p) => p.text),
    patched.map((p) => JSON.stringify(JSON.parse(p.text))),
  );
  patched.forEach(({ check }, i) => {
    if (kept[i] !== false) return;
    check.entry = undefined;
    check.error =
      "The dead letter's value has numbers JavaScript cannot hold exactly (over 15 significant digits, or out of " +
      'range): a patch would round them, so it is not applied';
  });
  return checks;
}

/**
 * Why a repair leaves an entry alone however it is edited, or undefined: it is settled, resolved or discarded by an
 * operator (as for a retry and every bulk action, journal/dead-letter.ts BULK_RULES: a discarded entry stays
 * discarded).
 */
export function settledEntry(
  entry: Pick<DlqRecord, 'status' | 'resolved_event_id' | 'discard_reason'>,
): string | undefined {
  if (entry.status === 'resolved') return `Already resolved (journal event ${entry.resolved_event_id})`;
  if (entry.status === 'discarded') return `Discarded by an operator: ${entry.discard_reason ?? 'no reason recorded'}`;
  return undefined;
}

/** A check as a preview shows it: would the repaired record journal now? */
export interface RepairPreview extends Omit<RepairCheck, 'entry'> {
  would_journal: boolean;
}

/**
 * What applying the edit would do, without doing it: each entry checked, and each that passes journaled for real in
 * a transaction that is then rolled back, so that what the journal itself refuses (a CHECK, jsonb) shows too.
 */
export async function previewRepairs(
  pool: Pool,
  entries: DlqRecord[],
  edit: RepairEdit,
  ctx: RepairContext,
): Promise<RepairPreview[]> {
  return trialJournaling(pool, async (client) => {
    const previews: RepairPreview[] = [];
    const checks = await checkRepairs(client, entries, edit, ctx);
    for (const [i, { entry, ...check }] of checks.entries()) {
      const settled = settledEntry(entries[i]);
      const journaled = entry && !settled ? await appendOne(client, entry) : undefined;
      const error = settled ?? (journaled && 'error' in journaled ? journaled.error : check.error);
      previews.push({ ...check, ...(error === undefined ? {} : { error }), would_journal: error === undefined });
    }
    return previews;
  });
}

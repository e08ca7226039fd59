import { createHash } from 'node:crypto';
import { applyPatch, Pointer, type Operation } from 'rfc6902';
import { LINEAGE_FIELDS, TENANT_FIELDS } from './kinds';

/** One RFC 6902 operation, as a replay request carries it. */
export type PatchOperation = Operation;

/** A JSON Patch a replay applies to each event's payload before it republishes it, and the id lineage names it by. */
export interface ReplayTransform {
  id: string;
  patch: PatchOperation[];
}

/** Most operations one transform may hold. */
export const MAX_TRANSFORM_OPERATIONS = 100;

const LINEAGE: ReadonlySet<string> = new Set(LINEAGE_FIELDS);

/**
 * Pointer tokens the patch library (rfc6902) does not follow as keys: it skips them, so a pointer through one names
 * its parent instead ("/__proto__/_repair_id" is "/_repair_id", a move from "/constructor" moves the whole document).
 * A patch may not use them anywhere in a pointer.
 */
export const UNSAFE_TOKENS = ['__proto__', 'constructor', 'prototype'] as const;

/**
 * What is wrong with a patch as a replay transform, naming the operation, or undefined when nothing is. The shape of
 * each operation is the API schema's to check; this checks what a schema cannot: pointers that parse, no operation on
 * the whole payload but `test` (the payload stays an object), and none that reads or writes a lineage field (the
 * replay writes those).
 */
export function transformProblem(patch: PatchOperation[]): string | undefined {
  if (patch.length === 0) return 'the patch has no operations';
  if (patch.length > MAX_TRANSFORM_OPERATIONS) return `at most ${MAX_TRANSFORM_OPERATIONS} operations`;
  for (const [index, operation] of patch.entries()) {
    const pointers: Array<[string, string]> = [['path', operation.path]];
    if (operation.op === 'move' || operation.op === 'copy') pointers.push(['from', operation.from]);
    for (const [member, pointer] of pointers) {
      const at = `operation ${index} (${operation.op}) ${member} ${JSON.stringify(pointer)}`;
      if (pointer !== '' && !pointer.startsWith('/')) return `${at} is not a JSON Pointer (it must start with "/")`;
      if (/~(?![01])/.test(pointer)) return `${at} is not a JSON Pointer ("~" must be followed by 0 or 1)`;
      const tokens = Pointer.fromJSON(pointer).tokens.slice(1);
      const unsafe = UNSAFE_TOKENS.find((token) => tokens.includes(token));
      if (unsafe) return `${at} goes through ${unsafe}, which the patch library does not follow as a key`;
      const [field] = tokens;
      if (field === undefined && operation.op !== 'test') return `${at} names the whole payload: patch its fields`;
      if (field !== undefined && LINEAGE.has(field))
        return `${at} names the lineage field ${field}, which a replay sets`;
    }
  }
  return undefined;
}

/** The transform of a patch: its id is a hash of the patch, so the same patch has the same id in every replay. */
export function replayTransform(patch: PatchOperation[]): ReplayTransform {
  const digest = createHash('sha256').update(JSON.stringify(patch)).digest('hex');
  return { id: `jp-${digest.slice(0, 16)}`, patch };
}

/** A payload transformed (its new text), or why the transform could not apply to it. */
export type TransformOutcome = { ok: true; text: string } | { ok: false; reason: string };

/**
 * Applies a transform to a journaled payload's text. The text is parsed (unlike a replay without a transform), so a
 * payload holding a number a double cannot carry exactly is refused rather than sent with another value; so is a
 * patch whose operation fails (a `test`, a missing path), or that would change the event's tenant.
 */
export function applyTransform(payloadText: string, transform: ReplayTransform): TransformOutcome {
  const inexact = inexactNumber(payloadText);
  if (inexact !== undefined) {
    // Not quoted: a reason goes into the replay's results (Temporal's history), where no payload value may go.
    return {
      ok: false,
      reason: `the payload holds a number (${inexact.length} characters) that JSON Patch cannot carry exactly`,
    };
  }
  const payload = JSON.parse(payloadText) as Record<string, unknown>;
  const tenant = TENANT_FIELDS.map((field) => JSON.stringify(payload[field]));
  // One operation at a time: the library throws on some paths through non-objects (an append "/-" to a string), and
  // that is the operation failing for this payload, not the replay.
  for (const [index, operation] of transform.patch.entries()) {
    let failure: string | undefined;
    try {
      failure = applyPatch(payload, [operation])[0]?.message;
    } catch (err) {
      failure = (err as Error).message;
    }
    if (failure !== undefined) {
      return { ok: false, reason: `operation ${index} (${operation.op} ${operation.path}) failed: ${failure}` };
    }
  }
  const changed = TENANT_FIELDS.find((field, i) => JSON.stringify(payload[field]) !== tenant[i]);
  if (changed) return { ok: false, reason: `the patch changes the tenant field ${changed}` };
  return { ok: true, text: JSON.stringify(payload) };
}

/**
 * Significant digits a double always carries: a decimal of at most this many digits and without an exponent comes back
 * from a double as the same decimal (its magnitude lies between 1e-14 and 1e15, far from the double's limits).
 */
const EXACT_DIGITS = 15;

const [QUOTE, BACKSLASH, MINUS, PLUS, DOT, LOWER_E, UPPER_E] = ['"', '\\', '-', '+', '.', 'e', 'E'].map((c) =>
  c.charCodeAt(0),
);
const isDigit = (code: number) => code >= 48 && code <= 57;

/**
 * The first number in a JSON text that a double does not hold exactly (compared as decimals), else undefined. One pass
 * over the text, skipping strings; only a number with more than EXACT_DIGITS digits or an exponent is compared, so an
 * ordinary payload costs a scan and no allocation (this runs on every event a transform replays).
 */
function inexactNumber(text: string): string | undefined {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      for (i++; i < text.length && text.charCodeAt(i) !== QUOTE; i++) if (text.charCodeAt(i) === BACKSLASH) i++;
      continue;
    }
    if (c !== MINUS && !isDigit(c)) continue;
    const start = i;
    let digits = 0;
    let exponent = false;
    for (; i < text.length; i++) {
      const d = text.charCodeAt(i);
      if (isDigit(d)) digits += exponent ? 0 : 1;
      else if (d === LOWER_E || d === UPPER_E) exponent = true;
      else if (d !== DOT && d !== PLUS && d !== MINUS) break;
    }
    // The character that ended the number is a separator (`,` `}` `]` or space): the outer loop may step over it.
    const token = text.slice(start, i);
    if ((digits > EXACT_DIGITS || exponent) && decimalOf(token) !== decimalOf(String(Number(token)))) return token;
  }
  return undefined;
}

/** A decimal number's value as `<sign><digits>e<exponent>` without leading or trailing zeros (NaN-like: null). */
function decimalOf(token: string): string | null {
  const parts = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(token);
  if (!parts) return null;
  const [, sign, whole, fraction = '', exponent = '0'] = parts;
  const digits = `${whole}${fraction}`.replace(/^0+/, '');
  const significant = digits.replace(/0+$/, '');
  if (significant === '') return '0';
  return `${sign}${significant}e${Number(exponent) - fraction.length + (digits.length - significant.length)}`;
}

import type { NewDlqEntry } from '../repository/event-dlq';

// C0 controls (NUL included), DEL, and lone UTF-16 surrogates: what Postgres text may refuse or mangle.
const UNSAFE_TEXT =
  // eslint-disable-next-line no-control-regex -- control characters are exactly what this pattern is for
  /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** Text any Postgres text column takes: unsafe characters replaced by U+FFFD, bounded length. */
export function sanitizeText(text: string, maxLength = 4000): string {
  const clean = text.replace(UNSAFE_TEXT, '\ufffd');
  return clean.length > maxLength ? `${clean.slice(0, maxLength)}…` : clean;
}

/** What a dead letter's error says when it is stored in its safe form (below); the error class ignores it. */
export const SAFE_FORM_NOTE = 'stored as bytes only';

/**
 * A dead letter in the form Postgres cannot refuse: the record's bytes (value, key, headers) as they are, the tenant
 * and error as sanitised text, no jsonb payload and no raw text value. Used only when the normal form was refused.
 */
export function safeDlqEntry<T extends NewDlqEntry>(entry: T, refusal: Error): T {
  const why = sanitizeText(refusal.message, 500);
  return {
    ...entry,
    tenantId: entry.tenantId === null ? null : sanitizeText(entry.tenantId, 200),
    payloadJson: null,
    rawValue: null,
    key: entry.key === null ? null : sanitizeText(entry.key),
    error: `${sanitizeText(entry.error)} [${SAFE_FORM_NOTE}: Postgres refused the text form: ${why}]`,
  };
}

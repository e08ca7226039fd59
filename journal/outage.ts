import type { NewDlqEntry } from '../repository/event-dlq';

// SQLSTATE classes that mean the server, not a row: connection exception, insufficient resources, operator
// intervention (shutdown, cancelled statement), system error, transaction rollback (serialization, deadlock).
const OUTAGE_CLASSES = ['08', '53', '57', '58', '40'];
// Errors without a SQLSTATE that come from the connection itself (node-postgres and the socket).
const CONNECTION_MESSAGES =
  /connection|terminat|timeout|timed out|not queryable|socket|ECONN|EPIPE|ENOTFOUND|EAI_AGAIN/i;

/**
 * True when an error means Postgres is not there (pause and retry), false when it is about what was written (a row
 * goes to the DLQ instead). Deliberately narrow: anything that is not clearly an outage is a row's problem, so that
 * no record can make ingestion retry forever.
 */
export function isOutage(err: unknown): boolean {
  const { code, message } = (err ?? {}) as { code?: unknown; message?: unknown };
  if (typeof code === 'string') {
    if (/^E[A-Z]+$/.test(code)) return true; // ECONNREFUSED, ECONNRESET, ETIMEDOUT ...
    return OUTAGE_CLASSES.some((cls) => code.startsWith(cls));
  }
  return typeof message === 'string' && CONNECTION_MESSAGES.test(message);
}

// C0 controls (NUL included), DEL, and lone UTF-16 surrogates: what Postgres text may refuse or mangle.
const UNSAFE_TEXT =
  // eslint-disable-next-line no-control-regex -- control characters are exactly what this pattern is for
  /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** Text any Postgres text column takes: unsafe characters replaced by U+FFFD, bounded length. */
export function sanitizeText(text: string, maxLength = 4000): string {
  const clean = text.replace(UNSAFE_TEXT, '\ufffd');
  return clean.length > maxLength ? `${clean.slice(0, maxLength)}…` : clean;
}

/**
 * A dead letter in the form Postgres cannot refuse: the record's bytes (value, key, headers) as they are, the tenant
 * and error as sanitised text, no jsonb payload and no raw text value. Used only when the normal form was refused.
 */
export function safeDlqEntry(entry: NewDlqEntry, refusal: Error): NewDlqEntry {
  const why = sanitizeText(refusal.message, 500);
  return {
    ...entry,
    tenantId: entry.tenantId === null ? null : sanitizeText(entry.tenantId, 200),
    payloadJson: null,
    rawValue: null,
    key: entry.key === null ? null : sanitizeText(entry.key),
    error: `${sanitizeText(entry.error)} [stored as bytes only: Postgres refused the text form: ${why}]`,
  };
}

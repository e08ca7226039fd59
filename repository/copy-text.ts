/**
 * PostgreSQL COPY text format: one line per row, columns separated by tabs, NULL as \N, and backslash, newline,
 * carriage return and tab escaped inside values; a Buffer is a bytea, written in hex format. Called once per journaled
 * event, so it avoids per-row arrays and only runs the replacement when a value holds one of those characters.
 */
export function copyTextLine(values: ReadonlyArray<string | number | Buffer | null>): string {
  let line = '';
  for (let i = 0; i < values.length; i++) {
    if (i > 0) line += '\t';
    line += copyTextValue(values[i]);
  }
  return line + '\n';
}

const HAS_SPECIAL = /[\\\n\r\t]/;
const SPECIAL = /[\\\n\r\t]/g;
const ESCAPES: Record<string, string> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function copyTextValue(value: string | number | Buffer | null): string {
  if (value === null) return '\\N';
  if (typeof value === 'number') return String(value);
  // bytea hex input is \x…; the backslash itself is escaped for COPY.
  if (Buffer.isBuffer(value)) return `\\\\x${value.toString('hex')}`;
  return HAS_SPECIAL.test(value) ? value.replace(SPECIAL, (c) => ESCAPES[c]) : value;
}

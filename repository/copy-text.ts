/**
 * PostgreSQL COPY text format: one line per row, columns separated by tabs, NULL as \N, and backslash, newline,
 * carriage return and tab escaped inside values.
 */
export function copyTextLine(values: ReadonlyArray<string | number | null>): string {
  return values.map(copyTextValue).join('\t') + '\n';
}

const SPECIAL = /[\\\n\r\t]/g;
const ESCAPES: Record<string, string> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function copyTextValue(value: string | number | null): string {
  if (value === null) return '\\N';
  if (typeof value === 'number') return String(value);
  return value.replace(SPECIAL, (c) => ESCAPES[c]);
}

import type { Queryable } from './queryable';

/**
 * SQLSTATEs with which Postgres refuses a JSONPath as a filter: a syntax error (42601), an unknown `$variable`
 * (42704), or a data exception (class 22: not a predicate, a bad regular expression, a number out of range).
 */
const REFUSED = /^(42601|42704|22...)$/;

/**
 * A `.datetime("…")` method in Postgres' own text of a jsonpath, capturing its template as a jsonpath string literal.
 * In that text every `"` inside a string literal is escaped, so this never matches inside a key or a string value.
 */
const DATETIME_TEMPLATE = /\.datetime\(("(?:[^"\\]|\\.)*")\)/g;

/**
 * Why Postgres would refuse this JSONPath as a payload filter, in its own words, or undefined when it is a valid
 * predicate. Postgres parses it (always as a bind parameter) and evaluates it once, non-silently, on an empty object:
 * a path that yields no single boolean (`$.lead_id`) fails there, whereas on real rows `@@` would quietly match nothing.
 * A datetime template is parsed only when a string reaches it, and one Postgres cannot parse fails even the silent
 * `@@`: each template is tried on a string too.
 */
export async function payloadFilterProblem(db: Queryable, expression: string): Promise<string | undefined> {
  try {
    const { rows } = await db.query<{ text: string }>(
      `SELECT jsonb_path_match('{}'::jsonb, $1::jsonpath), $1::jsonpath::text AS text`,
      [expression],
    );
    for (const [, template] of rows[0].text.matchAll(DATETIME_TEMPLATE)) {
      await db.query(`SELECT '"2000-01-01"'::jsonb @@ $1::jsonpath`, [`$.datetime(${template}) == "x"`]);
    }
    return undefined;
  } catch (err) {
    const { code, message } = err as { code?: string; message: string };
    if (code && REFUSED.test(code)) return message;
    throw err;
  }
}

/**
 * The WHERE clause of a payload filter, its expression appended to `values` as a bind parameter. `@@` is
 * jsonb_path_match in silent mode: a row whose payload lacks a field or holds another type simply does not match,
 * and a GIN jsonb_path_ops index on payload could serve the filter's equality conditions (bench/README.md).
 */
export function payloadFilterClause(expression: string, values: unknown[]): string {
  return `payload @@ $${values.push(expression)}::jsonpath`;
}

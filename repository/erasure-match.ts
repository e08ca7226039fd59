import type { PoolClient } from 'pg';
import { TENANT_FIELDS } from '../journal/kinds';
import type { ErasureTarget } from '../lifecycle/erasure-target';
import type { JournalArchiveRow } from './journal-archive';
import type { Queryable } from './queryable';
import { rememberRemovedSql } from './removed-records';

/**
 * Which rows an erasure selects, written once as SQL: the journal's and the DLQ's rows, and archived rows checked
 * through the same predicate (archiveRowMatches). docs/lifecycle.md ("Erasure") says it in words.
 */
export type ErasureTable = 'event_journal' | 'event_dlq';

// A header matches when its value (base64 in kafka_headers: [[name, value | null], ...]) is, or holds, the value.
const HEADERS = `jsonb_array_elements(CASE WHEN jsonb_typeof(kafka_headers) = 'array' THEN kafka_headers
  ELSE '[]'::jsonb END) AS h(v)`;

/**
 * A journal row (or an archived one, same columns) of the target: the tenant's rows, or the subject's: the payload's
 * top-level field as text (numbers as jsonb prints them: 42 is "42"), any string in the payload (nested, in arrays,
 * under another name) equal to the value, the key, or a header value equal to the value.
 */
function journalPredicate(target: ErasureTarget, values: unknown[]): string {
  const value = `$${values.push(target.value)}`;
  if (target.kind === 'tenant') return `(tenant_id = ${value})`;
  const field = `$${values.push(target.field)}`;
  const base64 = `$${values.push(Buffer.from(target.value, 'utf8').toString('base64'))}`;
  return `(payload->>${field} = ${value} OR jsonb_path_exists(payload, '$.** ? (@ == $v)', jsonb_build_object('v', ${value}::text))
    OR kafka_key = ${value} OR kafka_key_bytes = decode(${base64}, 'base64')
    OR EXISTS (SELECT 1 FROM ${HEADERS} WHERE h.v->>1 = ${base64}))`;
}

/**
 * A dead letter of the target: what selects a journal row (the tenant also by the payload's tenant fields), and, for
 * a record that did not parse as JSON or that Postgres refused (db_error, whose message may quote the row), the value
 * anywhere in its bytes: raw text and bytes, key, header values, error messages. Nothing there tells one field from
 * another, so such a record is erased when it holds the value at all (a short value can match more than its subject;
 * the dry run counts them first).
 */
function dlqPredicate(target: ErasureTarget, values: unknown[]): string {
  const exact =
    target.kind === 'tenant'
      ? `(tenant_id = $${values.push(target.value)} OR ${TENANT_FIELDS.map((f) => `payload->>'${f}' = $${values.length}`).join(' OR ')})`
      : journalPredicate(target, values);
  const forms = `$${values.push(textForms(target.value))}`;
  const bytes = `convert_to(f, 'UTF8')`;
  return `(${exact} OR ((payload IS NULL OR reason = 'db_error') AND EXISTS (SELECT 1 FROM unnest(${forms}::text[]) AS f
    WHERE strpos(raw_value, f) > 0 OR position(${bytes} IN raw_bytes) > 0 OR strpos(kafka_key, f) > 0
    OR position(${bytes} IN kafka_key_bytes) > 0 OR strpos(error, f) > 0 OR strpos(last_error, f) > 0
    OR EXISTS (SELECT 1 FROM ${HEADERS} WHERE position(${bytes} IN decode(h.v->>1, 'base64')) > 0))))`;
}

/**
 * The value as it may be written in text that was meant to be JSON: as is, and as a JSON string's content escapes it
 * (quotes, backslashes and control characters), also with every non-ASCII character as \uXXXX in lower and in upper
 * case hex (Python's json.dumps, Jackson's ESCAPE_NON_ASCII), each of those also with '/' as '\/' (PHP's json_encode).
 * The value itself comes first; every other form reads back as the value from a JSON string.
 */
export function textForms(value: string): string[] {
  const escaped = JSON.stringify(value).slice(1, -1);
  const ascii = (upper: boolean) =>
    escaped.replace(/[\u0080-\uffff]/g, (c) => {
      const hex = c.charCodeAt(0).toString(16).padStart(4, '0');
      return `\\u${upper ? hex.toUpperCase() : hex}`;
    });
  const escapes = [escaped, ascii(false), ascii(true)];
  return [...new Set([value, ...escapes, ...escapes.map((form) => form.replaceAll('/', '\\/'))])];
}

function predicate(table: ErasureTable, target: ErasureTarget, values: unknown[]): string {
  return table === 'event_journal' ? journalPredicate(target, values) : dlqPredicate(target, values);
}

/** The largest id of the table (0 when empty): where a pass over it in id windows ends, for now. */
export async function maxIdOf(db: Queryable, table: ErasureTable): Promise<number> {
  const { rows } = await db.query<{ id: string }>(`SELECT coalesce(max(id), 0)::text AS id FROM ${table}`);
  return Number(rows[0].id);
}

/** Rows of the target with ids in (afterId, upToId]: one bounded statement of a dry run's count. */
export async function countMatches(
  db: Queryable,
  table: ErasureTable,
  target: ErasureTarget,
  afterId: number,
  upToId: number,
): Promise<number> {
  const values: unknown[] = [afterId, upToId];
  const { rows } = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM ${table} WHERE id > $1 AND id <= $2 AND ${predicate(table, target, values)}`,
    values,
  );
  return rows[0].n;
}

/**
 * Deletes the target's rows with ids in (afterId, upToId], in one transaction that also records the journal ids in
 * erased_events, remembers the rows Kafka may still deliver again (received since `horizon`; null = all) in
 * removed_records, and adds the count to erasure_counts: a retry of the same window deletes nothing and counts
 * nothing more. Returns how many rows it deleted.
 */
export async function deleteMatches(
  client: PoolClient,
  table: ErasureTable,
  target: ErasureTarget,
  erasureId: string,
  afterId: number,
  upToId: number,
  horizon: Date | null,
): Promise<number> {
  const values: unknown[] = [afterId, upToId, erasureId];
  const where = predicate(table, target, values);
  const remember = rememberRemovedSql('gone', 'true', 'erasure', `$${values.push(horizon)}`, table);
  const noteIds =
    table === 'event_journal'
      ? `, noted AS (INSERT INTO erased_events (event_id, erasure_id) SELECT id, $3 FROM gone
           ON CONFLICT (event_id) DO NOTHING)`
      : '';
  await client.query('BEGIN');
  try {
    const { rows } = await client.query<{ n: number }>(
      `WITH gone AS (DELETE FROM ${table} WHERE id > $1 AND id <= $2 AND ${where}
                     RETURNING id, topic, kafka_partition, kafka_offset, content_hash, received_at, ${
                       table === 'event_dlq' ? 'payload, raw_value' : 'payload'
                     })${noteIds},
            remembered AS (${remember}),
            counted AS (INSERT INTO erasure_counts (erasure_id, store, rows)
                        SELECT $3, '${table === 'event_journal' ? 'journal' : 'dlq'}', count(*) FROM gone
                        ON CONFLICT (erasure_id, store) DO UPDATE SET rows = erasure_counts.rows + EXCLUDED.rows)
       SELECT count(*)::int AS n FROM gone`,
      values,
    );
    await client.query('COMMIT');
    return rows[0].n;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** Whether an archived row is the target's, by the journal's own predicate (for rows archiveCandidate let through). */
export async function archiveRowMatches(
  db: Queryable,
  target: ErasureTarget,
  row: JournalArchiveRow,
): Promise<boolean> {
  const values: unknown[] = [row.tenant_id, row.payload, row.kafka_key, row.kafka_key_bytes, row.kafka_headers];
  const { rows } = await db.query<{ matches: boolean }>(
    `SELECT ${journalPredicate(target, values)} AS matches
       FROM (SELECT $1::text AS tenant_id, $2::jsonb AS payload, $3::text AS kafka_key,
                    decode($4::text, 'base64') AS kafka_key_bytes, $5::jsonb AS kafka_headers) AS r`,
    values,
  );
  return rows[0].matches === true;
}

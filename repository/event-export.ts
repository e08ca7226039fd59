import type { PoolClient } from 'pg';
import { DEFAULT_CURSOR_BATCH, streamRows } from './cursor';
import { eventFilterClauses, type EventFilter } from './event-journal';
import type { Queryable } from './queryable';

// Postgres writes each line: the payload as it prints jsonb (no number loses a digit), received_at in UTC with
// microseconds, and Node never parses a row.
const LINE = `json_build_object(
    'id', id, 'tenant_id', tenant_id, 'topic', topic,
    'received_at', to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    'replay_count', replay_count, 'replay_source', replay_source,
    'kafka_partition', kafka_partition, 'kafka_offset', kafka_offset, 'kafka_key', kafka_key,
    'payload', payload)::text AS line`;

/**
 * How long one export may run. Postgres times a cursor's whole life as one statement (its fetches do not restart
 * statement_timeout), so the pool's DATABASE_STATEMENT_TIMEOUT would cut any export longer than it; an export runs
 * under this limit instead, which also bounds how long a client that stops reading holds its connection.
 */
export const EXPORT_TIMEOUT = '1h';

/** The journal's id span when an export starts: clients measure their progress against it. */
export interface ExportBounds {
  firstId: number;
  lastId: number;
}

/** The lowest and highest journal ids (0 and 0 when empty); two probes of the primary key. */
export async function exportBounds(db: Queryable): Promise<ExportBounds> {
  const { rows } = await db.query<{ first: string | null; last: string | null }>(
    'SELECT min(id) AS first, max(id) AS last FROM event_journal',
  );
  return { firstId: Number(rows[0].first ?? 0), lastId: Number(rows[0].last ?? 0) };
}

/**
 * The journal rows matching a filter as NDJSON, in id order, one chunk of text per cursor batch (`onBatch` learns
 * each batch's row count). Read through a server-side cursor on `client`: memory holds one batch however many rows
 * match, and the next batch is fetched only when the consumer asks for more. Runs in a read-only transaction of its
 * own on `client`, whose statement_timeout is EXPORT_TIMEOUT.
 */
export async function* exportEventLines(
  client: PoolClient,
  filter: EventFilter,
  onBatch: (rows: number) => void = () => undefined,
  batchSize = DEFAULT_CURSOR_BATCH,
): AsyncGenerator<string> {
  const values: unknown[] = [];
  const clauses = eventFilterClauses(filter, values);
  const where = clauses.length ? `WHERE ${clauses.join(' AND ')}` : '';
  await client.query('BEGIN READ ONLY');
  try {
    await client.query(`SELECT set_config('statement_timeout', $1, true)`, [EXPORT_TIMEOUT]);
    let chunk = '';
    let rows = 0;
    for await (const { line } of streamRows<{ line: string }>(
      client,
      `SELECT ${LINE} FROM event_journal ${where} ORDER BY id`,
      values,
      batchSize,
    )) {
      chunk += line + '\n';
      if (++rows === batchSize) {
        onBatch(rows);
        yield chunk;
        chunk = '';
        rows = 0;
      }
    }
    if (rows > 0) {
      onBatch(rows);
      yield chunk;
    }
  } finally {
    // Also when the consumer stops early (its client went away): the transaction ends before the client is reused.
    await client.query('ROLLBACK');
  }
}

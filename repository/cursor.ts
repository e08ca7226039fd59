import type { PoolClient } from 'pg';
import Cursor from 'pg-cursor';

/** Rows a cursor fetches per round trip unless told otherwise. */
export const DEFAULT_CURSOR_BATCH = 1000;

/**
 * Rows of any SELECT, fetched through a server-side cursor `batchSize` at a time: memory holds one batch however
 * many rows the query returns. The client is busy until the iteration ends (or is broken off, which closes the
 * cursor). statement_timeout covers the whole cursor, not each fetch: a caller reading for long sets its own limit
 * in its transaction (export, archive).
 */
export async function* streamRows<R>(
  client: PoolClient,
  text: string,
  values: unknown[] = [],
  batchSize = DEFAULT_CURSOR_BATCH,
): AsyncGenerator<R> {
  const cursor = client.query(new Cursor<R>(text, values));
  try {
    for (;;) {
      const rows = await cursor.read(batchSize);
      if (rows.length === 0) return;
      yield* rows;
    }
  } finally {
    await cursor.close();
  }
}

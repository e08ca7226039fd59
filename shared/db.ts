import pg from 'pg';
import type { Logger } from './logger';

// bigint columns (ids, offsets) come back as JS numbers: journal ids stay far below 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number(value));

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;

/** One pool per process. Idle-client errors are logged, never fatal: Postgres may restart under us. */
export function createPool(databaseUrl: string, max: number, log: Logger): pg.Pool {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max,
    connectionTimeoutMillis: 5000,
    idleTimeoutMillis: 30_000,
    application_name: 'crm-events-sink',
  });
  pool.on('error', (err) => log.warn({ err: err.message }, 'Postgres connection dropped'));
  return pool;
}

const TRANSIENT_CLASSES = ['08', '53', '57', '58', '40'];

/**
 * True when a database error means "Postgres is unreachable or overloaded", as opposed to a problem with one row.
 * Transient errors pause ingestion and are retried; they never send anything to the DLQ.
 */
export function isTransientDbError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  if (typeof code !== 'string') return true; // socket errors, timeouts, "Connection terminated"
  if (/^E[A-Z]+$/.test(code)) return true; // ECONNREFUSED, ECONNRESET, ETIMEDOUT ...
  return TRANSIENT_CLASSES.some((cls) => code.startsWith(cls));
}

/** Runs fn in a transaction on one pooled client; rolls back on error. */
export async function withTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch((rollbackErr: Error) => (broken = rollbackErr));
    throw err;
  } finally {
    // A client whose ROLLBACK failed has a dead socket: destroy it instead of returning it to the pool.
    client.release(broken);
  }
}

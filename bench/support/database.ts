import pg from 'pg';
import { createLogger } from '../../shared/logger';
import { prepareDatabase } from '../../lifecycle/prepare';
import { uniqueSuffix } from './env';

export interface ScratchDatabase {
  name: string;
  databaseUrl: string;
  drop(): Promise<void>;
}

/**
 * A fresh database named `<prefix>_<label>_<unique>`, set up by `prepare` (by default the whole preparation a
 * service does: migrations and journal partitions); drop() removes it (connections and all). The benchmarks use
 * prefix crm_bench, the tests crm_test.
 */
export async function createScratchDatabase(
  baseUrl: string,
  label: string,
  prefix = 'crm_bench',
  prepare: (databaseUrl: string) => Promise<unknown> = (databaseUrl) =>
    prepareDatabase(databaseUrl, createLogger('silent')),
): Promise<ScratchDatabase> {
  const name = `${prefix}_${label.replace(/\W/g, '_')}_${uniqueSuffix()}`.toLowerCase();
  await adminQuery(baseUrl, `CREATE DATABASE ${name}`);
  const url = new URL(baseUrl);
  url.pathname = `/${name}`;
  const databaseUrl = url.toString();
  await prepare(databaseUrl);
  return { name, databaseUrl, drop: () => dropDatabase(baseUrl, name) };
}

/**
 * Drops a bench database. `WITH (FORCE)` is not used: it refuses (for a non-superuser) when an autovacuum worker is
 * busy in the database, which is common right after a bulk load. Our own leftover sessions are terminated instead,
 * and a plain DROP, which makes autovacuum step aside, is retried while other sessions are still closing.
 */
async function dropDatabase(baseUrl: string, name: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await adminQuery(
        baseUrl,
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = '${name}' AND usename = current_user AND pid <> pg_backend_pid()`,
      );
      await adminQuery(baseUrl, `DROP DATABASE IF EXISTS ${name}`);
      return;
    } catch (err) {
      if ((err as { code?: string }).code !== '55006' || attempt === 10) throw err; // object_in_use
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
}

async function adminQuery(baseUrl: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: baseUrl });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/** Runs fn with a fresh database and always drops it afterwards. */
export async function withDatabase<T>(
  baseUrl: string,
  label: string,
  fn: (db: ScratchDatabase) => Promise<T>,
): Promise<T> {
  const db = await createScratchDatabase(baseUrl, label);
  try {
    return await fn(db);
  } finally {
    await db.drop();
  }
}

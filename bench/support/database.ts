import pg from 'pg';
import { createLogger } from '../../shared/logger';
import { migrate } from '../../shared/migrate';
import { uniqueSuffix } from './env';

export interface BenchDatabase {
  name: string;
  databaseUrl: string;
  drop(): Promise<void>;
}

/** A fresh database with the project's migrations applied; drop() removes it (connections and all). */
export async function createBenchDatabase(baseUrl: string, label: string): Promise<BenchDatabase> {
  const name = `crm_bench_${label.replace(/\W/g, '_')}_${uniqueSuffix()}`.toLowerCase();
  await adminQuery(baseUrl, `CREATE DATABASE ${name}`);
  const url = new URL(baseUrl);
  url.pathname = `/${name}`;
  const databaseUrl = url.toString();
  await migrate(databaseUrl, createLogger('silent'));
  return { name, databaseUrl, drop: () => adminQuery(baseUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
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
  fn: (db: BenchDatabase) => Promise<T>,
): Promise<T> {
  const db = await createBenchDatabase(baseUrl, label);
  try {
    return await fn(db);
  } finally {
    await db.drop();
  }
}

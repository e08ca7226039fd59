import pg from 'pg';
import { baseConfig } from './env';

/** Fails fast, with a hint, when the stack the suites need is not running. */
export default async function globalSetup(): Promise<void> {
  const config = baseConfig();
  const client = new pg.Client({ connectionString: config.databaseUrl, connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
  } catch (err) {
    throw new Error(
      `Postgres is not reachable at ${config.databaseUrl} (${(err as Error).message}). Run: bash scripts/stack.sh up`,
    );
  } finally {
    await client.end().catch(() => undefined);
  }
}

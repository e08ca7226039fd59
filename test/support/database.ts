import pg from 'pg';
import { createLogger } from '../../shared/logger';
import { migrate } from '../../shared/migrate';
import { uniqueSuffix } from './env';

/** A fresh, migrated database for one test file; drop() removes it. */
export async function createTestDatabase(baseUrl: string, label: string) {
  const name = `crm_test_${label.replace(/\W/g, '_')}_${uniqueSuffix()}`.toLowerCase();
  const admin = new pg.Client({ connectionString: baseUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(baseUrl);
  url.pathname = `/${name}`;
  const databaseUrl = url.toString();
  await migrate(databaseUrl, createLogger('silent'));
  return {
    name,
    databaseUrl,
    drop: async () => {
      const client = new pg.Client({ connectionString: baseUrl });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await client.end();
    },
  };
}

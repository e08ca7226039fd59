import pg from 'pg';
import { createScratchDatabase } from '../../bench/support/database';

/**
 * A fresh database for one test file (crm_test_<label>_…), prepared as a service prepares it unless `prepare` says
 * otherwise; drop() removes it.
 */
export const createTestDatabase = (
  baseUrl: string,
  label: string,
  prepare?: (databaseUrl: string) => Promise<unknown>,
) => createScratchDatabase(baseUrl, label, 'crm_test', prepare);

/** A client of its own (not pooled) at `url`, named, with its backend's pid. Its connection errors are the test's to see. */
export async function ownSession(url: string, name: string): Promise<{ client: pg.Client; pid: number }> {
  const client = new pg.Client({ connectionString: url, application_name: name });
  client.on('error', () => undefined);
  await client.connect();
  const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  return { client, pid: rows[0].pid };
}

/** `databaseUrl` reached through a local proxy listening on `port` (freezable or slow). */
export function viaProxy(databaseUrl: string, port: number): string {
  const url = new URL(databaseUrl);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  return url.toString();
}

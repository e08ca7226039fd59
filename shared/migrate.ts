import path from 'node:path';
import pg from 'pg';
import { runner } from 'node-pg-migrate';
import type { Logger } from './logger';

/** The sql/ folder, found from the compiled (dist/shared) or source (shared) location. */
export const SQL_DIR = path.resolve(
  __dirname,
  __dirname.includes(`${path.sep}dist${path.sep}`) ? '../../sql' : '../sql',
);

// Any constant works as long as every process agrees on it; it serialises concurrent `migrate` runs.
const MIGRATION_LOCK_KEY = 582_104_771;

/**
 * Applies the plain SQL files in sql/ in order with node-pg-migrate, recording them in `pgmigrations`.
 * Two processes starting at once queue on an advisory lock (node-pg-migrate's own lock fails fast instead),
 * so the second one finds nothing left to do. `after` runs under the same lock, on the same connection, outside any
 * transaction: schema work that cannot be a plain SQL file (lifecycle/prepare.ts).
 */
export async function migrate(
  databaseUrl: string,
  log: Logger,
  after?: (client: pg.Client) => Promise<void>,
): Promise<string[]> {
  const client = new pg.Client({ connectionString: databaseUrl, application_name: 'crm-events-sink-migrate' });
  await client.connect();
  try {
    // Polled, not waited for: a session blocked in pg_advisory_lock is a running transaction, which the holder's
    // CREATE INDEX CONCURRENTLY (lifecycle/convert.ts) would wait for: a deadlock.
    while (
      !(await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [MIGRATION_LOCK_KEY])).rows[0].ok
    ) {
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    const applied = await runner({
      dbClient: client,
      dir: SQL_DIR,
      direction: 'up',
      migrationsTable: 'pgmigrations',
      noLock: true,
      singleTransaction: true,
      checkOrder: true,
      ignorePattern: '(\\..*)|(.*\\.md)',
      logger: {
        debug: () => undefined,
        info: (msg: string) => log.debug(msg),
        warn: (msg: string) => log.warn(msg),
        // Our migrations are numbered (001_…), not timestamped: node-pg-migrate says so at error level for every file,
        // then orders them by that number, which is what we want.
        error: (msg: string) => (msg.startsWith("Can't determine timestamp") ? log.debug(msg) : log.error(msg)),
      },
    });
    const names = applied.map((m) => m.name);
    log.info({ applied: names }, names.length ? `Applied ${names.length} migration(s)` : 'Schema is up to date');
    await after?.(client);
    return names;
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]).catch(() => undefined);
    await client.end();
  }
}

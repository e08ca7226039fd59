import pg from 'pg';
import { createPool, withTransaction, type Pool } from '../../shared/db';
import { createLogger } from '../../shared/logger';
import { createTestDatabase } from '../support/database';
import { baseConfig } from '../support/env';

// A connection the server drops while a transaction holds it (Postgres killed or restarted) must end as a failed
// statement — an outage the caller handles — never as an unhandled 'error' event that ends the process. Found by the
// chaos soak: ingest exited on a Postgres SIGKILL.

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let pool: Pool;

beforeAll(async () => {
  db = await createTestDatabase(baseConfig().databaseUrl, 'db_outage');
  pool = createPool(db.databaseUrl, 2, createLogger('silent'), undefined, 'crm-db-outage-test');
});
afterAll(async () => {
  await pool?.end();
  await db?.drop();
});

it('a transaction whose connection is terminated by the server rejects, and the process keeps running', async () => {
  const uncaught: unknown[] = [];
  const onUncaught = (err: unknown) => uncaught.push(err);
  process.prependListener('uncaughtException', onUncaught);
  const admin = new pg.Client({ connectionString: db.databaseUrl });
  await admin.connect();
  try {
    const running = withTransaction(pool, (client) => client.query('SELECT pg_sleep(10)'));
    running.catch(() => undefined);
    // Wait until the sleep runs, then do what a killed or restarting server does to it.
    for (let i = 0; i < 50; i++) {
      const { rows } = await admin.query(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'crm-db-outage-test' AND query LIKE '%pg_sleep%'",
      );
      if (rows.length) {
        await admin.query('SELECT pg_terminate_backend($1)', [rows[0].pid]);
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    await expect(running).rejects.toThrow(/terminat/i);
    await new Promise((r) => setTimeout(r, 500)); // let any late 'error' event surface
    expect(uncaught).toEqual([]);
    // The pool recovers: the broken client was discarded, a new one works.
    await expect(pool.query('SELECT 1 AS ok')).resolves.toMatchObject({ rows: [{ ok: 1 }] });
  } finally {
    process.removeListener('uncaughtException', onUncaught);
    await admin.end();
  }
});

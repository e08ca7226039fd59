import { Client as PgClient } from 'pg';
import type { Queryable } from '../../repository/queryable';

/**
 * A session of its own that can hold a table in SHARE ROW EXCLUSIVE mode (what a migration or a long maintenance
 * statement does to writers): every INSERT/UPDATE of it waits on the server until release().
 */
export interface TableLock {
  /** BEGIN and LOCK TABLE: returns once the lock is held. */
  take(): Promise<void>;
  /** COMMIT: the writes that waited go in now. */
  release(): Promise<void>;
  /** Ends the session (and so the lock, if still held); never throws. */
  end(): Promise<void>;
}

/** Connects the session at once (so that taking the lock later costs no connection time). */
export async function connectTableLock(databaseUrl: string, table: string): Promise<TableLock> {
  const session = new PgClient({ connectionString: databaseUrl });
  await session.connect();
  return {
    async take() {
      await session.query('BEGIN');
      await session.query(`LOCK TABLE ${table} IN SHARE ROW EXCLUSIVE MODE`);
    },
    async release() {
      await session.query('COMMIT');
    },
    async end() {
      await session.end().catch(() => undefined);
    },
  };
}

/** Polls (100 times, every 100 ms) until `n` statements mentioning `table` wait on a lock; returns regardless. */
export async function untilWaitingOn(db: Queryable, table: string, n: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const { rows } = await db.query<{ n: string }>(
      `SELECT count(*) AS n FROM pg_locks l JOIN pg_stat_activity a USING (pid)
        WHERE NOT l.granted AND a.query LIKE '%${table}%'`,
    );
    if (Number(rows[0].n) >= n) break;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Whether a session of this database waits for an advisory lock: a pin (shared/db.ts withExclusiveLock) waiting for
 * the writers holding the shared form, or a writer queued behind such a pin.
 */
export async function advisoryLockWaits(db: Queryable): Promise<boolean> {
  const { rows } = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_locks
      WHERE locktype = 'advisory' AND NOT granted
        AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
  );
  return rows[0].n > 0;
}

/** Polls (100 times, every 20 ms) until a session waits for an advisory lock: whether one does. */
export async function untilAdvisoryLockWaits(db: Queryable): Promise<boolean> {
  for (let tries = 0; tries < 100; tries++) {
    if (await advisoryLockWaits(db)) return true;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return false;
}

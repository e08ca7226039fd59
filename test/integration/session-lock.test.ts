import { advisoryKey, createPool, withSessionLock, type Pool } from '../../shared/db';
import { createLogger } from '../../shared/logger';
import { createTestDatabase } from '../support/database';
import { baseConfig } from '../support/env';

/**
 * withSessionLock (shared/db.ts), the turn an erasure's archive pass takes: held on a connection of its own, lost with
 * it, and waited for without keeping the pool's connections from the holder.
 */
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let pool: Pool;

beforeAll(async () => {
  db = await createTestDatabase(baseConfig().databaseUrl, 'session_lock');
  // Two connections: the holder's lock connection, and one for everything else.
  pool = createPool(db.databaseUrl, 2, createLogger('silent'));
});

afterAll(async () => {
  await pool?.end();
  await db?.drop();
});

it('holders take turns, and those waiting leave the pool to the holder (before: the holder waited on them for ever)', async () => {
  const order: string[] = [];
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let holding!: () => void;
  const holds = new Promise<void>((resolve) => (holding = resolve));
  const first = withSessionLock(pool, 'test-turns', {}, async () => {
    holding();
    order.push('first in');
    await released;
    // The holder's own queries need the pool's other connection, which a waiting caller polls on.
    await pool.query('SELECT 1');
    order.push('first out');
  });
  await holds;
  const waiters = [1, 2, 3].map((n) =>
    withSessionLock(pool, 'test-turns', {}, async () => {
      order.push(`waiter ${n} in`);
      await pool.query('SELECT 1');
      order.push(`waiter ${n} out`);
    }),
  );
  await new Promise((resolve) => setTimeout(resolve, 1500)); // the waiters have asked at least once
  release();
  await Promise.all([first, ...waiters]);
  expect(order.slice(0, 2)).toEqual(['first in', 'first out']);
  // One at a time: each in is followed by its own out.
  for (let i = 2; i < order.length; i += 2) expect(order[i + 1]).toBe(order[i].replace(' in', ' out'));
  expect(order).toHaveLength(8);
}, 30_000);

it('held() rejects once the lock went with its connection', async () => {
  await withSessionLock(pool, 'test-lost', {}, async (held) => {
    await held();
    // The holder's backend: this lock's key, in this database.
    const { rows } = await pool.query<{ pid: number }>(
      `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND classid::bigint = ($1::bigint >> 32) & 4294967295 AND objid::bigint = $1::bigint & 4294967295`,
      [advisoryKey('test-lost').toString()],
    );
    expect(rows).toHaveLength(1);
    await pool.query('SELECT pg_terminate_backend($1)', [rows[0].pid]);
    await expect(held()).rejects.toThrow(/Lost the lock test-lost/);
  });
});

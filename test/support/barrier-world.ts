import { awaitBarrierHolders, holdBarrier } from '../../shared/barrier';
import { createPool, type Pool } from '../../shared/db';
import { createLogger } from '../../shared/logger';
import { createTestDatabase } from './database';
import { baseConfig } from './env';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A test database with the erasure's pool (4 connections) and replay pools of any size made on it, for suites that
 * set a replay page holding the barrier against an erasure waiting on it (shared/barrier.ts); hooks registered here.
 */
export function barrierWorld(label: string) {
  let db: Awaited<ReturnType<typeof createTestDatabase>> | undefined;
  let erasurePool: Pool | undefined;
  const pools: Pool[] = [];
  beforeAll(async () => {
    db = await createTestDatabase(baseConfig().databaseUrl, label);
    erasurePool = createPool(db.databaseUrl, 4, createLogger('silent'));
  });
  afterAll(async () => {
    for (const p of pools) await p.end().catch(() => undefined);
    await erasurePool?.end();
    await db?.drop();
  });
  return {
    databaseUrl: () => db!.databaseUrl,
    erasurePool: () => erasurePool!,
    replayPool(size: number): Pool {
      const pool = createPool(db!.databaseUrl, size, createLogger('silent'));
      pools.push(pool);
      return pool;
    },
    /** A page holding `name` whose send stays until end(); resolves once it sends, with its session's backend pid. */
    async sendingPage(pool: Pool, name: string, leaseMs: number) {
      let end!: () => void;
      const ending = new Promise<void>((resolve) => (end = resolve));
      let pid: number | undefined;
      let sending = false;
      const held = holdBarrier(
        pool,
        name,
        async (client, keep) => {
          pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
          sending = true;
          keep(ending.then(() => (sending = false)));
        },
        { leaseMs },
      ).catch(() => undefined);
      for (let i = 0; i < 200 && !sending; i++) await sleep(10);
      expect(sending).toBe(true);
      return { pid: pid!, sending: () => sending, end, held };
    },
    /** The erasure's wait on `name`, on its own pool: what it did so far ('waiting' while it waits). */
    watchBarrier(name: string, sending: () => boolean): () => string {
      let verdict = 'waiting';
      void awaitBarrierHolders(erasurePool!, name, { timeoutMs: 30_000 }).then(
        () => (verdict = sending() ? 'returned while sending' : 'returned'),
        (err: Error) => (verdict = `rejected: ${err.message}`),
      );
      return () => verdict;
    },
  };
}

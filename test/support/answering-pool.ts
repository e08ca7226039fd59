import type { Pool } from 'pg';

/**
 * A pg Pool whose every statement answers at once with no rows and one row counted: enough for the erasures' barrier
 * (shared/barrier.ts holdBarrier) to be held and left, in unit tests of what runs under it.
 */
export function answeringPool(max = 10): Pool {
  const client = {
    query: async () => ({ rows: [], rowCount: 1 }),
    on: () => client,
    off: () => client,
    release: () => undefined,
  };
  return { options: { max }, connect: async () => client } as unknown as Pool;
}

import type { Pool, QueryResult } from 'pg';

/** Answers a statement itself, or undefined to leave it to the default answer. */
export type Answer = (text: string, values: unknown[]) => QueryResult | undefined;

/**
 * A pg Pool whose every statement answers at once with no rows and one row counted: enough for the erasures' barrier
 * (shared/barrier.ts holdBarrier) to be held and left, in unit tests of what runs under it. `answer` answers the
 * statements it knows (a table kept in memory, send-progress-table.ts), on the pool and on its clients.
 */
export function answeringPool(max = 10, answer?: Answer): Pool {
  const query = async (text: string, values: unknown[] = []) =>
    answer?.(text, values) ?? ({ rows: [], rowCount: 1 } as unknown as QueryResult);
  const client = {
    query,
    on: () => client,
    off: () => client,
    release: () => undefined,
  };
  return { options: { max }, connect: async () => client, query } as unknown as Pool;
}

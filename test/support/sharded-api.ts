import type { LightMyRequestResponse } from 'fastify';
import { createApiEnv, produceJournaled, type ApiEnv } from './api';
import { eventually } from './sink';

/**
 * The API on the real stack set up for sharded range replays: a range of at least 10 events runs as `shards` child
 * workflows, in pages of 2 events, and `events` leads of tenant acme are journaled in `window`.
 */
export interface ShardedApiEnv {
  env: ApiEnv;
  /** Around the journaled leads, on the database's clock (received_at is stamped by it). */
  window: { start: string; end: string };
  /** The journal ids of those leads. */
  ids: number[];
  /** POSTs as an operator's client does (x-requested-by), with an optional JSON body. */
  post(url: string, body?: unknown): Promise<LightMyRequestResponse>;
}

export async function createShardedApiEnv(label: string, shards: number, events: number): Promise<ShardedApiEnv> {
  const env = await createApiEnv(label, {
    env: {
      API_REPLAY_RATE_LIMIT_PER_MINUTE: '10000',
      REPLAY_PAGE_SIZE: '2',
      REPLAY_SHARD_THRESHOLD: '10',
      REPLAY_SHARDS: String(shards),
    },
  });
  const dbNow = async (offsetMs: number) => {
    const { rows } = await env.h.pool.query<{ t: Date }>('SELECT now() AS t');
    return new Date(rows[0].t.getTime() + offsetMs).toISOString();
  };
  const start = await dbNow(-1000);
  const ids = await produceJournaled(
    env.h,
    env.h.topics.leads,
    Array.from({ length: events }, (_, i) => ({ tenant_id: 'acme', name: `${label} ${i}` })),
  );
  const window = { start, end: await dbNow(1000) };
  const post = (url: string, body?: unknown) =>
    env.app.inject({
      method: 'POST',
      url,
      headers: { 'x-requested-by': 'test' },
      ...(body === undefined ? {} : { payload: body as object }),
    });
  return { env, window, ids, post };
}

/** A count once it has stopped moving: the first value read twice in a row, `everyMs` apart. */
export function settled(read: () => Promise<number>, what: string, everyMs: number): Promise<number> {
  let last = -1;
  return eventually(
    async () => {
      const now = await read();
      const same = now === last;
      last = now;
      return same ? now : undefined;
    },
    what,
    30_000,
    everyMs,
  );
}

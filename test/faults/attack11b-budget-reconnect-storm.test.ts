import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../api/app';
import { createPool, type Pool } from '../../shared/db';
import { seedJournal } from '../support/journal';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';
import { connectSse } from '../support/sse';

/**
 * Attack (issue 11, point 6, the process-wide catch-up budget, STREAM_CATCHUP_ROWS_PER_SECOND): "all catch-ups of the
 * process share `budget`, so that however many clients resume at once their reads and encoding stay within a rate"
 * (api/live/catch-up.ts). A catch-up reads its page first and asks the budget afterwards; a client that has gone
 * by its turn pays nothing (catch-up-budget.ts: tokens are taken only `if (!isClosed())`), and the page is encoded
 * and offered all the same. A reconnect storm (connect with Last-Event-ID: 0, hang up at the `connected` frame,
 * again) thus has the API read, parse and encode journal rows from Postgres as fast as its pool allows, for free.
 *
 * Measured on the API's own pool: the rows that catch-up page reads returned, against the budget's bound (a full
 * bucket, then the refill rate) plus one page per client open at a time (each may read a page before it waits).
 */
jest.setTimeout(120_000);

const RATE = 200;
const PAGE = 500;
const CONCURRENCY = 4;
const STORM_MS = 4000;

let h: SinkHarness;
let app: FastifyInstance;
let pool: Pool;
let base: string;
let rowsRead = 0;

beforeAll(async () => {
  h = await createSinkHarness('atk11b-budget-storm', { STREAM_CATCHUP_ROWS_PER_SECOND: String(RATE) });
  await seedJournal(h.pool, 2000, { topics: [h.topics.leads] });
  // The API's own pool, as startApiComponent makes it, observed: rows returned by journal page reads (eventsAfter).
  pool = createPool(h.databaseUrl, h.config.api.databasePoolSize, h.log);
  const query = pool.query.bind(pool) as (...args: unknown[]) => Promise<{ rows: unknown[] }>;
  (pool as unknown as { query: unknown }).query = async (...args: unknown[]) => {
    const result = await query(...args);
    const text = typeof args[0] === 'string' ? args[0] : '';
    if (text.includes('running_bytes')) rowsRead += result.rows.length;
    return result;
  };
  app = await buildApp({ config: h.config, pool, metrics: h.metrics, log: h.log, healthChecks: {} });
  await app.listen({ host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
});
afterAll(async () => {
  await app?.close();
  await pool?.end();
  await h?.close();
});

/** Connects resuming from 0, hangs up as soon as the stream has said `connected`. */
async function hitAndRun(): Promise<void> {
  const sse = await connectSse(base, '', { 'last-event-id': '0' });
  try {
    await eventually(async () => sse.frames.length > 0, 'the connected frame', 10_000);
  } finally {
    sse.close();
  }
}

it('clients that hang up while waiting for the budget do not get journal pages read for them beyond it', async () => {
  const startedAt = Date.now();
  let connects = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (Date.now() - startedAt < STORM_MS) {
        await hitAndRun();
        connects += 1;
      }
    }),
  );
  // Reads already issued finish on their own; let them land before counting.
  await new Promise((r) => setTimeout(r, 2000));
  const seconds = (Date.now() - startedAt) / 1000;
  const bound = RATE * (1 + seconds) + CONCURRENCY * PAGE;
  expect(connects).toBeGreaterThan(0);
  expect(rowsRead).toBeLessThanOrEqual(bound);
});

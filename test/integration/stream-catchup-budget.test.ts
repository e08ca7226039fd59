import type { FastifyInstance } from 'fastify';
import { seedJournal } from '../support/journal';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';
import { connectSse, domainEvents, listenApp, type Sse } from '../support/sse';

/**
 * Issue 11, point 6: however many clients resume at once, one API process sends them journal rows at no more than
 * STREAM_CATCHUP_ROWS_PER_SECOND together (ingest shares its event loop), and each of them gets its turn. The bound
 * is an upper one: a slow machine only sends fewer, so it is checked on every sample while the clients catch up.
 * (With the budget off, the same clients receive several times the bound within the first second.)
 */
jest.setTimeout(120_000);

const RATE = 500; // one catch-up page (500 rows) fits in a second's budget: no page is let through on credit
const CLIENTS = 6;
const ROWS = 2000;
let h: SinkHarness;
let app: FastifyInstance;
let base: string;

beforeAll(async () => {
  h = await createSinkHarness('stream-catchup-budget', {
    STREAM_CATCHUP_ROWS_PER_SECOND: String(RATE),
    STREAM_MAX_BACKLOG: String(ROWS),
  });
  await h.startIngest();
  await seedJournal(h.pool, ROWS, { topics: [h.topics.leads] });
  ({ app, base } = await listenApp(h));
});
afterAll(async () => {
  await app?.close();
  await h?.close();
});

const received = (clients: Sse[]) => clients.reduce((n, sse) => n + domainEvents(sse).length, 0);

it('clients resuming together share one rate: rows sent never exceed the budget, and every client gets rows', async () => {
  const startedAt = Date.now();
  const clients = await Promise.all(
    Array.from({ length: CLIENTS }, () => connectSse(base, '', { 'last-event-id': '0' })),
  );
  try {
    const samples: { seconds: number; rows: number }[] = [];
    while (samples.length < 40) {
      await new Promise((r) => setTimeout(r, 100));
      // Rows counted after the clock is read: anything the bucket let out by then is in the count or still on the way.
      const seconds = (Date.now() - startedAt) / 1000;
      samples.push({ seconds, rows: received(clients) });
    }
    // A full bucket (one second's worth) at the start, then the refill rate.
    for (const s of samples) expect(s.rows).toBeLessThanOrEqual(RATE + RATE * s.seconds);
    expect(samples[samples.length - 1].rows).toBeGreaterThan(0);
    // Waiting in arrival order: no client is left without rows while others take the budget.
    await eventually(
      async () => clients.every((sse) => domainEvents(sse).length > 0),
      'every resuming client to receive rows',
    );
  } finally {
    for (const sse of clients) sse.close();
  }
});

import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../api/app';
import { createPool } from '../../shared/db';
import { seedJournal } from '../support/journal';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';
import { connectSse, domainEvents, listenApp, type Sse } from '../support/sse';

/**
 * Issue 11, point 6: a client resuming from far back gets at most STREAM_MAX_BACKLOG events from the journal, then a
 * backlog_truncated frame, then live events; the catch-up is paced by the client, so a slow reader loses nothing.
 */
jest.setTimeout(90_000);

const MAX_BACKLOG = 1000;
const BUFFER = 50;
let h: SinkHarness;
let app: FastifyInstance;
let base: string;
let seeded: number[];

beforeAll(async () => {
  h = await createSinkHarness('stream-backlog', {
    STREAM_MAX_BACKLOG: String(MAX_BACKLOG),
    STREAM_CLIENT_BUFFER: String(BUFFER),
  });
  await h.startIngest();
  // Bulky payloads: one catch-up page of the old size (500 rows) would overflow the socket and a 50-frame buffer.
  seeded = await seedJournal(h.pool, 2500, { topics: [h.topics.leads], label: 'x'.repeat(400) });
  ({ app, base } = await listenApp(h));
});
afterAll(async () => {
  await app?.close();
  await h?.close();
});

const ids = (sse: Sse) => domainEvents(sse).map((f) => Number(f.id));
const kinds = (sse: Sse) => sse.frames.map((f) => String(f.data.kind));

it('resuming from resume_after fetches the next part; a backlog within the cap is not truncated', async () => {
  const next = await connectSse(base, '', { 'last-event-id': String(seeded[999]) });
  const tail = await connectSse(base, '', { 'last-event-id': String(seeded[seeded.length - 501]) });
  try {
    await eventually(async () => kinds(next).includes('backlog_truncated'), 'the second part to be truncated too');
    expect(ids(next)).toEqual(seeded.slice(1000, 2000));
    await eventually(async () => ids(tail).length === 500, 'the last 500 events');
    expect(ids(tail)).toEqual(seeded.slice(-500));
    await new Promise((r) => setTimeout(r, 300));
    expect(kinds(tail)).not.toContain('backlog_truncated');
  } finally {
    next.close();
    tail.close();
  }
});

it('a client that reads slowly paces the catch-up and loses nothing, however small its buffer', async () => {
  const sse = await connectSse(base, '', { 'last-event-id': String(seeded[1499]) });
  try {
    // Read in fits and starts: the server must wait for each page to be taken rather than drop what does not fit.
    for (let i = 0; i < 10 && ids(sse).length < MAX_BACKLOG; i++) {
      sse.res.pause();
      await new Promise((r) => setTimeout(r, 200));
      sse.res.resume();
      await new Promise((r) => setTimeout(r, 20));
    }
    await eventually(async () => ids(sse).length === MAX_BACKLOG, 'the whole capped backlog');
    expect(ids(sse)).toEqual(seeded.slice(1500, 2500));
    expect(kinds(sse)).not.toContain('dropped');
    expect(kinds(sse)).not.toContain('backlog_truncated'); // exactly MAX_BACKLOG were missed: nothing left out
  } finally {
    sse.close();
  }
});

// Last: its live event lengthens the journal past the seeded rows the tests above count on.
it('sends at most STREAM_MAX_BACKLOG missed events, then backlog_truncated, then continues live', async () => {
  const sse = await connectSse(base, '', { 'last-event-id': '0' });
  try {
    const truncated = await eventually(
      async () => sse.frames.find((f) => f.data.kind === 'backlog_truncated'),
      'the backlog_truncated frame',
    );
    expect(ids(sse)).toEqual(seeded.slice(0, MAX_BACKLOG));
    expect(truncated.data).toMatchObject({ sent: MAX_BACKLOG, max_backlog: MAX_BACKLOG, resume_after: seeded[999] });
    expect(kinds(sse)).not.toContain('dropped');

    await h.send(h.topics.leads, [{ tenant_id: 'acme', name: 'live after truncation' }]);
    const live = await eventually(
      async () => domainEvents(sse).find((f) => (f.data.payload as { name?: string }).name === 'live after truncation'),
      'a live event after the truncated backlog',
    );
    expect(Number(live.id)).toBeGreaterThan(seeded[seeded.length - 1]);
    // In order: 'connected', the capped backlog, the truncation notice, then live (compared compactly).
    const afterBacklog = sse.frames.slice(1 + MAX_BACKLOG).map((f) => `${String(f.data.kind)}:${f.id ?? ''}`);
    expect(afterBacklog).toEqual(['backlog_truncated:', `domain_event:${live.id}`]);
  } finally {
    sse.close();
  }
});

it('a catch-up queued behind a busy API pool for longer than a checkout may wait still gets its backlog', async () => {
  const pool = createPool(h.config.databaseUrl, 1, h.log, undefined, 'crm-events-sink-api');
  const busy = await buildApp({ config: h.config, pool, metrics: h.metrics, log: h.log, healthChecks: {} });
  await busy.listen({ host: '127.0.0.1', port: 0 });
  // The pool's one connection is taken for longer than a checkout waits (5 s): the catch-up's reads queue behind it,
  // as they do behind each other when many clients resume at once on a busy machine.
  const held = pool.query('SELECT pg_sleep(7)');
  const sse = await connectSse(`http://127.0.0.1:${(busy.server.address() as AddressInfo).port}`, '', {
    'last-event-id': String(seeded[999]),
  });
  try {
    await held;
    await eventually(
      async () => kinds(sse).includes('backlog_truncated') || kinds(sse).includes('error'),
      'the catch-up to end',
      60_000,
    );
    expect(kinds(sse)).not.toContain('error');
    expect(ids(sse)).toEqual(seeded.slice(1000, 2000));
  } finally {
    sse.close();
    await busy.close();
    await pool.end();
  }
});

import type { FastifyInstance } from 'fastify';
import { notifyJournaled } from '../../repository/event-journal';
import { seedJournal } from '../support/journal';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';
import { connectSse, domainEvents, listenApp } from '../support/sse';

/**
 * Attack (resume invariant "every matching row after the cursor exactly once"): a row G takes its id, then 12,000
 * rows commit after it, then G commits, before the live feed has looked at its gap again. A client resumes from
 * below G: its catch-up reads G from the journal and sends it. While the client is slow, the feed fills its gap and
 * emits G as a late row, held in `pending` for the hand-over. The catch-up then sends the 12,000 rows after G, which
 * push G out of the client's 10,000 recent ids; the held G is offered at the hand-over and sent a second time.
 */
jest.setTimeout(120_000);

let h: SinkHarness;
let app: FastifyInstance;
let base: string;

beforeAll(async () => {
  h = await createSinkHarness('atkfinal-late-twice');
  Object.assign(h.config.stream, { maxBacklog: 100_000, catchUpRowsPerSecond: 0 });
  ({ app, base } = await listenApp(h));
});
afterAll(async () => {
  await app?.close();
  await h?.close();
});

it('a late row the catch-up already sent is not sent again at the hand-over', async () => {
  const insert = "INSERT INTO event_journal (tenant_id, topic, payload) VALUES ('acme', $1, $2) RETURNING id";
  const cursor = (await h.pool.query(insert, [h.topics.leads, { tenant_id: 'acme', n: 'cursor' }])).rows[0]
    .id as number;
  await notifyJournaled(h.pool, cursor);
  const observer = await connectSse(base, '?tenant_id=acme');
  const early = await h.pool.connect();
  let sse: Awaited<ReturnType<typeof connectSse>> | undefined;
  try {
    await eventually(async () => observer.frames.length > 0, 'observer connected');
    await early.query('BEGIN');
    const g = (await early.query(insert, [h.topics.leads, { tenant_id: 'acme', n: 'late' }])).rows[0].id as number;
    const ids = await seedJournal(h.pool, 12_000, {
      topics: [h.topics.leads],
      tenants: ['acme'],
      label: 'x'.repeat(1000),
    });
    await notifyJournaled(h.pool, ids[ids.length - 1]);
    // The feed has read past G (and noted its gap).
    await eventually(
      async () => observer.frames.some((f) => Number(f.id) === ids[ids.length - 1] || f.data.kind === 'dropped'),
      'the feed to read the seeded rows',
      60_000,
    );
    await new Promise((r) => setTimeout(r, 2000));
    await early.query('COMMIT'); // no notification: the feed has not looked at G's gap yet

    sse = await connectSse(base, '?tenant_id=acme', { 'last-event-id': String(cursor) });
    sse.res.pause(); // a slow client: the catch-up waits for it after a page or two
    await new Promise((r) => setTimeout(r, 1000));
    await notifyJournaled(h.pool, g); // the feed wakes, finds G in its gap, emits it late
    await new Promise((r) => setTimeout(r, 1000));
    sse.res.resume();
    await eventually(
      async () => domainEvents(sse!).some((f) => Number(f.id) === ids[ids.length - 1]),
      'the catch-up to finish',
      60_000,
    );
    await new Promise((r) => setTimeout(r, 1000));
    const sent = domainEvents(sse).map((f) => Number(f.id));
    expect({
      timesGSent: sent.filter((id) => id === g).length,
      total: sent.length,
      dropped: sse.frames.filter((f) => f.data.kind === 'dropped' || f.data.kind === 'backlog_truncated').length,
    }).toEqual({ timesGSent: 1, total: 12_001, dropped: 0 });
  } finally {
    early.release();
    observer.close();
    sse?.close();
  }
});

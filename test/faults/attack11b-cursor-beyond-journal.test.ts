import type { FastifyInstance } from 'fastify';
import { notifyJournaled } from '../../repository/event-journal';
import { seedJournal } from '../support/journal';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';
import { connectSse, domainEvents, listenApp, type Sse } from '../support/sse';

/**
 * Attack (issue 11, point 6: a resuming client is served "whatever the cursor ... an id beyond the newest"): the
 * stream takes Last-Event-ID as the client's cursor without looking at the journal, and the live path sends only rows
 * above the cursor. A client whose Last-Event-ID is beyond the newest journal id (an EventSource that kept its last id
 * across a restore of the database from a backup, or a move to another environment) is answered 200 `connected` and
 * then never sent anything, silently, until the journal's ids catch up with its number: it is neither served the new
 * events nor told that its cursor is unknown.
 */
jest.setTimeout(90_000);

let h: SinkHarness;
let app: FastifyInstance;
let base: string;

beforeAll(async () => {
  h = await createSinkHarness('atk11b-cursor-beyond');
  await seedJournal(h.pool, 10, { topics: [h.topics.leads] });
  ({ app, base } = await listenApp(h));
});
afterAll(async () => {
  await app?.close();
  await h?.close();
});

/** What the client got after `connected`: domain events, or any frame about its cursor. */
const afterConnected = (sse: Sse) => sse.frames.filter((f) => f.data.kind !== 'connected');

it('a Last-Event-ID beyond the newest journal id is not left silently without the events that follow', async () => {
  const sse = await connectSse(base, '?tenant_id=beyond', { 'last-event-id': '900000000000' });
  try {
    await eventually(async () => sse.frames.length > 0, 'connected');
    const { rows } = await h.pool.query<{ id: number }>(
      `INSERT INTO event_journal (tenant_id, topic, payload) VALUES ('beyond', $1, '{"n": 1}') RETURNING id`,
      [h.topics.leads],
    );
    await notifyJournaled(h.pool, rows[0].id);
    await eventually(async () => afterConnected(sse).length > 0, 'anything after connected', 15_000).catch(
      () => undefined,
    );
    // Either the new event is delivered, or the client is told its cursor is not in the journal.
    const delivered = domainEvents(sse).some((f) => Number(f.id) === rows[0].id);
    const told = afterConnected(sse).some((f) => f.data.kind !== 'domain_event');
    expect({ delivered, told }).not.toEqual({ delivered: false, told: false });
  } finally {
    sse.close();
  }
});

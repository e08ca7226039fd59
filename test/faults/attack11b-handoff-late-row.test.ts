import type { FastifyInstance } from 'fastify';
import { notifyJournaled } from '../../repository/event-journal';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';
import { connectSse, domainEvents, listenApp } from '../support/sse';

/**
 * Attack (issue 11, point 6: a resuming client "never loses an event between catch-up and live"): the catch-up reads
 * the journal on its own, so it can run ahead of the live feed. Two ingest batches take ids `low` < `high`; `high`
 * commits first. A client resuming with Last-Event-ID reads `high` from the journal (its cursor is now `high`) while
 * `low` is still uncommitted. `low` then commits, and the feed, whose read of that region comes only now (under the
 * load point 6 is about, the feed's read waits for the API's small pool behind the catch-ups' page reads), sees
 * `low` and `high` together, in order, so it does not flag `low` as late. The client drops it as "at or below my
 * cursor": `low` is never sent, and a reconnect with Last-Event-ID: `high` does not fetch it either.
 *
 * The feed's delayed read is modelled by announcing `high` only once `low` has committed (one notification covers
 * both, as a feed that was busy when `high` was announced reads both in its next pass).
 */
jest.setTimeout(90_000);

let h: SinkHarness;
let app: FastifyInstance;
let base: string;

beforeAll(async () => {
  h = await createSinkHarness('atk11b-handoff');
  ({ app, base } = await listenApp(h));
});
afterAll(async () => {
  await app?.close();
  await h?.close();
});

it('a row committed below an id the catch-up already sent reaches the resuming client', async () => {
  const insert = "INSERT INTO event_journal (tenant_id, topic, payload) VALUES ('handoff', $1, $2) RETURNING id";
  const early = await h.pool.connect();
  let sse: Awaited<ReturnType<typeof connectSse>> | undefined;
  try {
    await early.query('BEGIN');
    const low = (await early.query(insert, [h.topics.leads, { tenant_id: 'handoff', n: 'takes its id first' }])).rows[0]
      .id as number;
    const high = (await h.pool.query(insert, [h.topics.leads, { tenant_id: 'handoff', n: 'commits first' }])).rows[0]
      .id as number;
    expect(low).toBeLessThan(high);

    sse = await connectSse(base, '?tenant_id=handoff', { 'last-event-id': '0' });
    // Let the catch-up read its pages and hand over to live. (It reads up to what the feed has read, so `high` reaches
    // the client through the feed, which knows `low` was skipped; before, the catch-up sent `high` here.)
    await new Promise((r) => setTimeout(r, 1000));

    await notifyJournaled(early, high);
    await early.query('COMMIT');
    // Both rows are in the journal now, after the client's Last-Event-ID: it is owed both.
    const journaled = await h.pool.query<{ id: number }>(
      "SELECT id FROM event_journal WHERE tenant_id = 'handoff' ORDER BY id",
    );
    expect(journaled.rows.map((r) => r.id)).toEqual([low, high]);

    await eventually(
      async () => domainEvents(sse!).length >= 2,
      'the row that committed late, below the cursor the catch-up reached',
      15_000,
    ).catch(() => undefined);
    // Each once, in whatever order the two paths deliver them.
    expect(
      domainEvents(sse)
        .map((f) => Number(f.id))
        .sort((a, b) => a - b),
    ).toEqual([low, high]);
  } finally {
    early.release();
    sse?.close();
  }
});

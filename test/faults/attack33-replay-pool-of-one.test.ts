import { createReplayActivities } from '../../activities/replay';
import { createPool, type Pool } from '../../shared/db';
import { seedJournal } from '../support/journal';
import { createSinkHarness, type SinkHarness } from '../support/sink';
import { activityDeps, inActivity } from '../support/temporal';

/**
 * attack33 (5811654: "single-event and batch replays read and send under [the erasure barrier]; its holders take at
 * most half of a process's pool").
 *
 * Invariant: the pool is never starved by barrier holders. DATABASE_POOL_SIZE=1 is a valid setting (config allows
 * 1..200), and before 5811654 a single-event replay on such a worker read its row and sent it. Now the barrier's
 * holder takes the pool's only connection (half of one is rounded up to one slot) and holds it while the replay
 * reads its row through the pool: that read waits for a second connection that can never come, until the pool's
 * connectionTimeoutMillis (5 s) fails it. Every single-event and batch replay of such a worker fails, each attempt.
 * Observed: "timeout exceeded when trying to connect" after 5,064 ms (104 ms before 5811654).
 * Fixed: withErasuresChecked gives its connection to the send, and single and batch replays read on it.
 */
jest.setTimeout(60_000);

let h: SinkHarness;
let pool: Pool;

beforeAll(async () => {
  h = await createSinkHarness('a33pool1');
  pool = createPool(h.databaseUrl, 1, h.log);
}, 60_000);

afterAll(async () => {
  await pool?.end();
  await h?.close();
});

it('a single-event replay on a worker whose pool has one connection sends its row', async () => {
  const [eventId] = await seedJournal(h.pool, 1, { topics: [h.topics.leads], label: 'a33pool1' });
  const activities = createReplayActivities({ ...activityDeps(h), pool });
  const started = Date.now();
  const outcome = await inActivity(() =>
    activities.replayEvent({ eventId, source: 'attack33', replayId: 'attack33-pool-of-one' }),
  ).then(
    (result) => ({ replayed: result.event_id }),
    (err: Error) => ({ failed: err.message, afterMs: Date.now() - started }),
  );
  expect(outcome).toEqual({ replayed: eventId });
});

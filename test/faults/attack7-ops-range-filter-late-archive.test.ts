import { archiveWindow } from '../../bench/support/archive';
import { ensureTopics } from '../../shared/kafka';
import { progressQuery } from '../../workflows/definitions';
import { publishedBy } from '../support/api';
import { eventually, type SinkHarness } from '../support/sink';
import { createTimeSkippingWorld } from '../support/temporal';

/**
 * A range replay with a payload filter pins no archived rows at planning (a window reaching the archive is refused:
 * archived rows are not filtered). But rows maintenance archives while it runs are sent from the archive after the
 * journal pass, and that pass reads segments without the filter: every archived row of the window went out, matching
 * or not. Such a replay now fails naming the rows it could not filter, and sends none of them.
 */
let world: Awaited<ReturnType<typeof createTimeSkippingWorld>>;
let h: SinkHarness;
const taskQueue = 'attack7-ops-filter-late-archive';

beforeAll(async () => {
  world = await createTimeSkippingWorld('a7opsfilterlate', taskQueue);
  h = world.h;
  // 40 rows in March 2025 and 40 two weeks ago; every other one matches the filter.
  for (const from of ['2025-03-01T00:00:00Z', new Date(Date.now() - 14 * 86_400_000).toISOString()]) {
    await h.pool.query(
      `INSERT INTO event_journal (tenant_id, topic, payload, received_at)
       SELECT 'acme', $2, jsonb_build_object('tenant_id', 'acme', 'n', g, 'keep', g % 2 = 0),
              $1::timestamptz + make_interval(mins => g)
         FROM generate_series(0, 39) AS g`,
      [from, h.topics.leads],
    );
  }
}, 180_000);

afterAll(() => world?.close());

it('rows archived while a filtered range replay runs are never sent unfiltered', async () => {
  const end = new Date(Date.now() + 3_600_000).toISOString();
  const targetTopic = `${h.topics.leads}.filtered`;
  await ensureTopics(h.kafka, [targetTopic], 1);
  const handle = await world.env.client.workflow.start('rangeReplayWorkflow', {
    taskQueue,
    workflowId: 'a7-filter-late-archive',
    args: [
      {
        source: 'range',
        start: '2025-03-01T00:00:00Z',
        end,
        targetTopic,
        payloadFilter: '$.keep == true',
        maxEventsPerSecond: 5,
      },
    ],
    workflowExecutionTimeout: '30m',
  });
  await eventually(async () => (await handle.query(progressQuery)).published >= 5, 'five events sent');
  // The recent rows, not reached yet, archived and removed from the journal as maintenance would.
  const manifest = await archiveWindow(h.pool, h.archive, {
    segment: 'a7-recent',
    from: '2025-04-01T00:00:00Z',
    before: end,
  });
  expect(manifest.rows).toBe(40);
  // The journal pass had not reached them (the 20 matching March rows come first).
  expect((await handle.query(progressQuery)).published).toBeLessThan(20);

  const outcome = await handle.result().then(
    (result) => ({ result }),
    (err: Error) => ({ error: causes(err) }),
  );
  const sent = await publishedBy(h, targetTopic, 'a7-filter-late-archive');
  // Whatever became of the replay, nothing it sent fails its filter.
  expect(sent.filter((m) => m.keep !== true)).toEqual([]);
  expect(outcome).toEqual({ error: expect.stringMatching(/payload_filter.*archived while it was replayed/) });
}, 240_000);

/** The messages of an error and its causes (a workflow failure wraps the activity's, which wraps the application's). */
function causes(err: Error | undefined): string {
  const messages: string[] = [];
  for (let e = err; e; e = e.cause as Error | undefined) messages.push(e.message);
  return messages.join(' <- ');
}

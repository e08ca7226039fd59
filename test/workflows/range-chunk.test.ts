import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import type { Producer } from 'kafkajs';
import { createActivities } from '../../activities';
import type { PlannedRange, RangeChunkInput, RangeChunkResult } from '../../activities/range';
import type { RangeFilter } from '../../repository/event-journal';
import { ensureTopics } from '../../shared/kafka';
import { readTopic, seedJournal } from '../support/journal';
import { createSinkHarness, type SinkHarness } from '../support/sink';
import { activityDeps } from '../support/temporal';

// The range replay activity alone, in MockActivityEnvironment, on the real Postgres and Kafka: what one call covers,
// what a retried attempt resends, and how cancellation stops it.
let h: SinkHarness;
let ids: number[];
let filter: RangeFilter;

beforeAll(async () => {
  h = await createSinkHarness('rangechunk');
  ids = await seedJournal(h.pool, 100, { topics: [h.topics.leads], tenants: ['chunk'] });
  // Planning heartbeats while it counts the archive: it runs in an activity context too.
  const plan: PlannedRange = await new MockActivityEnvironment().run(activities().planRange, {
    start: '2000-01-01T00:00:00Z',
    end: '2100-01-01T00:00:00Z',
    tenantId: 'chunk',
  });
  filter = plan.filter;
});
afterAll(() => h?.close());

function activities(producer: Producer = h.producer) {
  return createActivities(activityDeps(h, producer));
}

async function chunkTo(name: string, input: Partial<RangeChunkInput> = {}): Promise<RangeChunkInput> {
  const targetTopic = `${h.topics.leads}.${name}`;
  await ensureTopics(h.kafka, [targetTopic], 3);
  return { filter, cursor: 0, limit: 10, source: 'range', replayId: `chunk-${name}`, targetTopic, ...input };
}

/** A mock activity context that records every heartbeat; `onHeartbeat` may act on the n-th one (1-based). */
function context(
  info: ConstructorParameters<typeof MockActivityEnvironment>[0] = {},
  onHeartbeat?: (n: number, env: MockActivityEnvironment) => void,
) {
  const env = new MockActivityEnvironment(info, { logger: new DefaultLogger('ERROR') }); // failures are expected here
  const beats: RangeChunkResult[] = [];
  env.on('heartbeat', (d: RangeChunkResult) => {
    beats.push(d);
    onHeartbeat?.(beats.length, env);
  });
  return { env, beats };
}

const sources = (messages: Record<string, unknown>[]) =>
  messages.map((m) => Number(m._replayed_from_event_id)).sort((a, b) => a - b);

it('replays several pages in one call, heartbeating the running result after each', async () => {
  const input = await chunkTo('several', { maxPages: 4, budgetMs: 60_000 });
  const { env, beats } = context();
  const result = await env.run(activities().replayRangePage, input);
  expect(result).toEqual({ cursor: ids[39], read: 40, published: 40, failed: 0, done: false, pages: 4 });
  expect(beats.map((b) => [b.pages, b.cursor, b.published])).toEqual(
    [1, 2, 3, 4].map((p) => [p, ids[p * 10 - 1], p * 10]),
  );
  expect(sources(await readTopic(h.kafka, input.targetTopic!, 40))).toEqual(ids.slice(0, 40));
});

it('stops after the page in hand once its time budget is spent, and at the end of the range', async () => {
  const spent = await chunkTo('budget', { maxPages: 100, budgetMs: 0 });
  expect(await context().env.run(activities().replayRangePage, spent)).toMatchObject({
    pages: 1,
    read: 10,
    done: false,
  });
  const rest = await context().env.run(activities().replayRangePage, { ...spent, cursor: ids[79], budgetMs: 60_000 });
  expect(rest).toEqual({ cursor: ids[99], read: 20, published: 20, failed: 0, done: true, pages: 3 }); // 10, 10, 0 rows
});

it('a retried chunk resumes from its last heartbeat: heartbeated pages are not sent again', async () => {
  const input = await chunkTo('retry', { maxPages: 100, budgetMs: 60_000 });
  let sends = 0;
  const flaky: Producer = {
    ...h.producer,
    sendBatch: async (batch) => {
      if (++sends === 4) throw new Error('broker not available (simulated)');
      return h.producer.sendBatch(batch);
    },
  };
  const first = context();
  const err = await first.env.run(activities(flaky).replayRangePage, input).catch((e: unknown) => e);
  expect((err as Error).message).toMatch(/simulated/);
  expect(first.beats).toHaveLength(3); // pages 1–3 sent and heartbeated, page 4 failed

  const retry = context({ attempt: 2, heartbeatDetails: first.beats[2] });
  const result = await retry.env.run(activities().replayRangePage, input);
  expect(result).toEqual({ cursor: ids[99], read: 100, published: 100, failed: 0, done: true, pages: 11 });
  expect(retry.beats[0]).toMatchObject({ pages: 4, cursor: ids[39] }); // went on with page 4
  expect(sources(await readTopic(h.kafka, input.targetTopic!, 100))).toEqual(ids); // each event once
});

it('cancellation delivered with a heartbeat ends the chunk as cancelled before the next page', async () => {
  const input = await chunkTo('cancel', { maxPages: 100, budgetMs: 60_000 });
  const { env, beats } = context({}, (n, e) => n === 2 && e.cancel());
  const err = await env.run(activities().replayRangePage, input).catch((e: unknown) => e);
  expect((err as Error).name).toBe('CancelledFailure');
  expect(beats).toHaveLength(2);
  expect(sources(await readTopic(h.kafka, input.targetTopic!, 20))).toEqual(ids.slice(0, 20));
});

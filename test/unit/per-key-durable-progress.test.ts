import type { Context } from '@temporalio/activity';
import fc from 'fast-check';
import { chunkShape, durableProgress } from '../../activities/durable-progress';
import { publishChunkPage } from '../../activities/ordered-publish';
import { withErasuresChecked } from '../../repository/erasure';
import { createProducer } from '../../shared/kafka';
import { pageOptions } from '../../workflows/activity-options';
import { answeringPool } from '../support/answering-pool';
import { fakeActivityServer } from '../support/fake-temporal-attempts';
import { fakeTransactionalKafka } from '../support/fake-transactional-kafka';
import { sendProgressTable } from '../support/send-progress-table';

/**
 * Per-key order through retries that resume from what the server recorded (activities/durable-progress.ts
 * durableProgress), with generated chunks.
 *
 * Invariant: under per_key ordering each key's events reach the topic in journal order, at most its last one repeated
 * back to back, whatever point attempt 1's worker is cut off from Temporal at (or dies: the server sees the same).
 *
 * Generated: events of up to four keys, pages of a few of them (a chunk of range pages, replayRangePage's loop with its
 * resume, progress and heartbeats), a produce time, and the moment attempt 1's heartbeats stop reaching the server; the
 * fake server (test/support/fake-temporal-attempts.ts) times attempt 1 out and runs attempt 2, the replay producer runs
 * on a fake transactional Kafka, send_progress is a table in memory. The same generator, with the durable progress
 * left out, finds an older event after a newer one: the property has teeth.
 */

const TOPIC = 't';

interface Scenario {
  /** The key of each event, in journal order (event ids 1, 2, …). */
  keys: number[];
  pageSize: number;
  produceMs: number;
  cutFromMs: number;
}

const scenarios = fc.record({
  keys: fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 2, maxLength: 12 }),
  pageSize: fc.integer({ min: 1, max: 5 }),
  produceMs: fc.integer({ min: 20, max: 200 }),
  cutFromMs: fc.integer({ min: 0, max: 1500 }),
});

interface Progress {
  cursor: number;
  pages: number;
  pageSent?: number[];
}

/** Runs the scenario; each key's event ids in the order the topic holds them (committed transactions). */
async function run({ keys, pageSize, produceMs, cutFromMs }: Scenario, durably: boolean) {
  jest.useFakeTimers({ doNotFake: ['nextTick', 'queueMicrotask'] });
  try {
    const started = Date.now();
    const { kafka, transactions } = fakeTransactionalKafka({
      topic: TOPIC,
      now: () => Date.now() - started,
      produceMs,
    });
    const producer = createProducer(kafka);
    await producer.connect();
    const pool = answeringPool(10, sendProgressTable().answer);
    const events = keys.map((key, i) => ({
      id: i + 1,
      message: { topic: TOPIC, key: Buffer.from(`k${key}`), value: `${key}:${i + 1}`, headers: {} },
    }));
    const chunk = async (ctx: Context, attempt: number) => {
      const durable = durableProgress<Progress>(ctx, chunkShape());
      let progress: Progress = (durably
        ? await durable.resume(pool)
        : (ctx.info.heartbeatDetails as Progress | undefined)) ?? { cursor: 0, pages: 0 };
      while (progress.cursor < events.length) {
        await new Promise((resolve) => setTimeout(resolve, 100)); // the page's read
        const page = events.slice(progress.cursor, progress.cursor + pageSize);
        const before = progress;
        await withErasuresChecked(
          pool,
          page.map((e) => e.id),
          producer,
          (_erased, keep, db) =>
            publishChunkPage(producer, page, { ordering: 'per_key', replayId: 'r1' }, before, ctx, {
              keep,
              durable: durably ? { progress: durable, db } : undefined,
            }),
        );
        progress = { cursor: before.cursor + page.length, pages: before.pages + 1 };
        ctx.heartbeat(progress);
      }
      // Attempt 1, cut off, waits for its end (a worker that died never returns either).
      if (attempt === 1 && Date.now() - started >= cutFromMs) {
        await new Promise((resolve) => setTimeout(resolve, 200_000));
      }
    };
    const server = fakeActivityServer(pageOptions, chunk, {
      lostHeartbeat: (attempt, at) => attempt === 1 && at >= cutFromMs,
    });
    await jest.advanceTimersByTimeAsync(300_000);
    await server.finished;
    const byKey = new Map<string, number[]>();
    for (const value of transactions.filter((t) => t.committed).flatMap((t) => t.values)) {
      const [key, id] = value.split(':');
      byKey.set(key, [...(byKey.get(key) ?? []), Number(id)]);
    }
    return { byKey, outcomes: server.attempts.map((a) => a.outcome) };
  } finally {
    jest.useRealTimers();
  }
}

/** Why the topic breaks the invariant for the scenario, or undefined. */
function broken(scenario: Scenario, byKey: Map<string, number[]>): string | undefined {
  for (const key of new Set(scenario.keys)) {
    const journal = scenario.keys.flatMap((k, i) => (k === key ? [i + 1] : []));
    const got = byKey.get(String(key)) ?? [];
    const collapsed = got.filter((id, i) => i === 0 || id !== got[i - 1]);
    if (collapsed.join() !== journal.join()) return `key ${key}: ${got.join()} (journal ${journal.join()})`;
    if (got.length - journal.length > 1) return `key ${key}: ${got.join()} repeats more than its last event once`;
  }
  return undefined;
}

it('each key keeps journal order, at most one event repeated, wherever attempt 1 is cut off', async () => {
  await fc.assert(
    fc.asyncProperty(scenarios, async (scenario) => {
      const { byKey, outcomes } = await run(scenario, true);
      expect({ broken: broken(scenario, byKey), done: outcomes.at(-1) }).toEqual({
        broken: undefined,
        done: 'completed',
      });
    }),
    { numRuns: 40 },
  );
});

it('without the durable progress, the same generator finds an older event after a newer one', async () => {
  const found = await fc.check(
    fc.asyncProperty(scenarios, async (scenario) => broken(scenario, (await run(scenario, false)).byKey) === undefined),
    { numRuns: 200 },
  );
  expect(found.failed).toBe(true);
  expect(broken(found.counterexample![0], (await run(found.counterexample![0], false)).byKey)).toMatch(/key \d+: /);
});

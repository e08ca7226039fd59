import type { Kafka } from 'kafkajs';
import { pinGroupStart } from '../../ingest/group-start';
import type { Logger } from '../../shared/logger';

/**
 * pinGroupStart with a fake admin client over generated groups: what it commits is exactly the end of every partition
 * the group has no offset for, nothing else, and it never throws. The real broker is in
 * test/integration/attack17-health-uncommitted-stall.test.ts.
 */

interface FakeTopic {
  /** Per partition: the committed offset ('-1': none) and the high watermark. */
  partitions: { committed: string; high: string }[];
}

/** `failures(n)`: the error the n-th setOffsets call (from 0) fails with, if any. */
function fakeKafka(topics: Record<string, FakeTopic>, failures: (n: number) => Error | undefined = () => undefined) {
  const calls: { topic: string; partitions: { partition: number; offset: string }[] }[] = [];
  let disconnects = 0;
  let attempts = 0;
  const admin = {
    connect: async () => undefined,
    disconnect: async () => {
      disconnects += 1;
    },
    fetchOffsets: async ({ topics: names }: { topics: string[] }) =>
      names.map((topic) => ({
        topic,
        partitions: topics[topic].partitions.map((p, partition) => ({ partition, offset: p.committed })),
      })),
    fetchTopicOffsets: async (topic: string) =>
      topics[topic].partitions.map((p, partition) => ({ partition, low: '0', high: p.high, offset: p.high })),
    setOffsets: async (call: { topic: string; partitions: { partition: number; offset: string }[] }) => {
      const error = failures(attempts++);
      if (error) throw error;
      calls.push({ topic: call.topic, partitions: call.partitions });
    },
  };
  return { kafka: { admin: () => admin } as unknown as Kafka, calls, disconnects: () => disconnects };
}

function silentLog(): Logger & { warnings: string[] } {
  const warnings: string[] = [];
  const log = {
    warnings,
    debug: () => undefined,
    info: () => undefined,
    warn: (_: unknown, msg: string) => warnings.push(msg),
    error: () => undefined,
  };
  return log as unknown as Logger & { warnings: string[] };
}

/** A small deterministic generator, so a failure names a seed that reproduces it. */
function random(seed: number) {
  let s = seed >>> 0;
  return (n: number) => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s % n;
  };
}

it('commits the end of exactly the partitions the group has no offset for, over 300 generated groups', async () => {
  for (let seed = 1; seed <= 300; seed++) {
    const next = random(seed);
    const topics: Record<string, FakeTopic> = {};
    for (let t = 0; t < 1 + next(3); t++) {
      topics[`topic-${t}`] = {
        partitions: Array.from({ length: 1 + next(6) }, () => {
          const high = next(1000);
          const committed = next(2) === 0 ? '-1' : String(next(high + 1));
          return { committed, high: String(high) };
        }),
      };
    }
    const { kafka, calls, disconnects } = fakeKafka(topics);
    const pinned = await pinGroupStart(kafka, 'group', Object.keys(topics), silentLog());

    const expected = Object.entries(topics).flatMap(([topic, { partitions }]) =>
      partitions.flatMap((p, partition) => (p.committed === '-1' ? [{ topic, partition, offset: p.high }] : [])),
    );
    expect({ seed, pinned }).toEqual({ seed, pinned: expected });
    // One setOffsets per topic that needed one, with just its uncommitted partitions.
    expect(calls.flatMap((c) => c.partitions.map((p) => ({ topic: c.topic, ...p })))).toEqual(expected);
    expect(new Set(calls.map((c) => c.topic)).size).toBe(calls.length);
    expect(disconnects()).toBeGreaterThanOrEqual(1);
  }
});

it('commits nothing and says nothing when the group has members (they hold its start)', async () => {
  const { kafka, calls } = fakeKafka(
    { t: { partitions: [{ committed: '-1', high: '5' }] } },
    () => new Error('The consumer group must have no running instances, current state: Stable'),
  );
  const log = silentLog();
  await expect(pinGroupStart(kafka, 'group', ['t'], log)).resolves.toEqual([]);
  expect(calls).toEqual([]);
  expect(log.warnings).toEqual([]);
});

it('retries a refusal that passes (a coordinator still loading on a new cluster), warning on each', async () => {
  const loading = new Error("The coordinator is loading and hence can't process requests for this group");
  const { kafka, calls } = fakeKafka({ t: { partitions: [{ committed: '-1', high: '5' }] } }, (n) =>
    n < 2 ? loading : undefined,
  );
  const log = silentLog();
  await expect(pinGroupStart(kafka, 'group', ['t'], log)).resolves.toEqual([{ topic: 't', partition: 0, offset: '5' }]);
  expect(calls).toHaveLength(1);
  expect(log.warnings).toEqual([
    expect.stringMatching(/Could not commit where the consumer group starts yet; retrying/),
    expect.stringMatching(/retrying/),
  ]);
});

it('refuses to let the consumer start when the start cannot be committed in time', async () => {
  const { kafka, calls } = fakeKafka(
    { t: { partitions: [{ committed: '-1', high: '5' }] } },
    () => new Error('Connection error: connect ECONNREFUSED'),
  );
  const started = Date.now();
  await expect(pinGroupStart(kafka, 'group', ['t'], silentLog(), 1000)).rejects.toThrow(
    /Could not commit where consumer group group starts \(KAFKA_FROM_BEGINNING=false\) within 1 s: Connection error/,
  );
  expect(Date.now() - started).toBeLessThan(5000);
  expect(calls).toEqual([]);
});

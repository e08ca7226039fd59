import type { Kafka } from 'kafkajs';
import { IngestStartInterrupted, pinGroupStart } from '../../ingest/group-start';
import type { Logger } from '../../shared/logger';

/**
 * pinGroupStart with a fake admin client that keeps the group's committed offsets, over generated groups and
 * generated refusals: it returns only once every partition has a committed start, commits the end of exactly the
 * partitions that had none, never moves a committed offset, and is bounded. The real broker is in
 * test/integration/attack17-health-uncommitted-stall.test.ts and attack18-concurrent-group-start.test.ts.
 */

/** Per topic, per partition: the committed offset ('-1': none) and the high watermark. */
type Group = Record<string, { committed: string; high: string }[]>;

/** What one setOffsets call does: commit all it is given, only some (a temporary member given a share), or refuse. */
type SetOffsetsOutcome = { commit: 'all' | 'first' } | { error: Error };

const MEMBERS = () => new Error('The consumer group must have no running instances, current state: Stable');
const LOADING = () => new Error("The coordinator is loading and hence can't process requests for this group");

function fakeKafka(group: Group, outcome: (n: number) => SetOffsetsOutcome = () => ({ commit: 'all' })) {
  const commits: { topic: string; partition: number; offset: string }[] = [];
  let calls = 0;
  let connected = 0;
  const admin = {
    connect: async () => {
      connected += 1;
    },
    disconnect: async () => {
      connected = 0;
    },
    fetchOffsets: async ({ topics }: { topics: string[] }) =>
      topics.map((topic) => ({
        topic,
        partitions: group[topic].map((p, partition) => ({ partition, offset: p.committed })),
      })),
    fetchTopicOffsets: async (topic: string) =>
      group[topic].map((p, partition) => ({ partition, low: '0', high: p.high, offset: p.high })),
    setOffsets: async (call: { topic: string; partitions: { partition: number; offset: string }[] }) => {
      const result = outcome(calls++);
      if ('error' in result) throw result.error;
      const given = result.commit === 'all' ? call.partitions : call.partitions.slice(0, 1);
      for (const p of given) {
        group[call.topic][p.partition].committed = p.offset;
        commits.push({ topic: call.topic, ...p });
      }
    },
  };
  return { kafka: { admin: () => admin } as unknown as Kafka, commits, connected: () => connected };
}

function capturingLog(): Logger & { warnings: string[] } {
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

function generatedGroup(next: (n: number) => number): Group {
  const group: Group = {};
  for (let t = 0; t < 1 + next(3); t++) {
    group[`topic-${t}`] = Array.from({ length: 1 + next(6) }, () => {
      const high = next(1000);
      return { committed: next(2) === 0 ? '-1' : String(next(high + 1)), high: String(high) };
    });
  }
  return group;
}

it('leaves every partition with a committed start, the end where there was none, over 300 generated groups', async () => {
  for (let seed = 1; seed <= 300; seed++) {
    const next = random(seed);
    const group = generatedGroup(next);
    const before = structuredClone(group);
    // Refusals and partial commits, as a loading coordinator and a replica pinning at the same time cause them.
    const outcomes: SetOffsetsOutcome[] = Array.from(
      { length: next(4) },
      () => [{ commit: 'first' as const }, { error: LOADING() }, { error: MEMBERS() }][next(3)],
    );
    const { kafka, commits, connected } = fakeKafka(group, (n) => outcomes[n] ?? { commit: 'all' });
    const pinned = await pinGroupStart(kafka, 'group', Object.keys(group), capturingLog(), { retryMinMs: 1 });

    const lacking = Object.entries(before).flatMap(([topic, partitions]) =>
      partitions.flatMap((p, partition) => (p.committed === '-1' ? [{ topic, partition, offset: p.high }] : [])),
    );
    expect({ seed, pinned }).toEqual({ seed, pinned: lacking });
    // Every partition now has a start: the end where it had none, its own offset untouched elsewhere.
    const after = Object.entries(group).flatMap(([topic, ps]) => ps.map((p, partition) => [topic, partition, p]));
    for (const [topic, partition, p] of after as [string, number, { committed: string; high: string }][]) {
      const was = before[topic][partition].committed;
      expect({ seed, topic, partition, committed: p.committed }).toEqual({
        seed,
        topic,
        partition,
        committed: was === '-1' ? p.high : was,
      });
    }
    expect(new Set(commits.map((c) => `${c.topic}/${c.partition}`)).size).toBe(commits.length); // none twice
    expect(connected()).toBe(0);
  }
});

it('waits for a replica whose pin is under way instead of starting beside it', async () => {
  const group: Group = { t: [{ committed: '-1', high: '5' }] };
  const { kafka, commits } = fakeKafka(group, (n) => {
    if (n === 1) group.t[0].committed = '5'; // the other replica's pin lands while this one is refused
    return { error: MEMBERS() };
  });
  const log = capturingLog();
  await expect(pinGroupStart(kafka, 'group', ['t'], log, { deadlineMs: 10_000 })).resolves.toEqual([
    { topic: 't', partition: 0, offset: '5' },
  ]);
  expect(commits).toEqual([]);
  expect(log.warnings).toEqual([]);
});

it('starts with a warning, in time, beside members that hold partitions without a committed start', async () => {
  const { kafka } = fakeKafka({ t: [{ committed: '-1', high: '5' }] }, () => ({ error: MEMBERS() }));
  const log = capturingLog();
  const started = Date.now();
  await expect(pinGroupStart(kafka, 'group', ['t'], log, { deadlineMs: 1000 })).resolves.toEqual([]);
  expect(Date.now() - started).toBeLessThan(5000);
  expect(log.warnings).toEqual([
    expect.stringMatching(/members without a committed start for these partitions stayed within 1 s/),
  ]);
});

it('retries a refusal that passes (a coordinator still loading on a new cluster), warning on each', async () => {
  const { kafka, commits } = fakeKafka({ t: [{ committed: '-1', high: '5' }] }, (n) =>
    n < 2 ? { error: LOADING() } : { commit: 'all' },
  );
  const log = capturingLog();
  await expect(pinGroupStart(kafka, 'group', ['t'], log)).resolves.toEqual([{ topic: 't', partition: 0, offset: '5' }]);
  expect(commits).toEqual([{ topic: 't', partition: 0, offset: '5' }]);
  expect(log.warnings).toEqual([
    expect.stringMatching(/Could not commit where the consumer group starts yet; retrying/),
    expect.stringMatching(/retrying/),
  ]);
});

it('refuses to let the consumer start when the start cannot be committed in time', async () => {
  const { kafka, commits } = fakeKafka({ t: [{ committed: '-1', high: '5' }] }, () => ({
    error: new Error('Connection error: connect ECONNREFUSED'),
  }));
  const started = Date.now();
  await expect(pinGroupStart(kafka, 'group', ['t'], capturingLog(), { deadlineMs: 1000 })).rejects.toThrow(
    /Could not commit where consumer group group starts \(KAFKA_FROM_BEGINNING=false\) within 1 s: Connection error/,
  );
  expect(Date.now() - started).toBeLessThan(5000);
  expect(commits).toEqual([]);
});

it('gives up at once, having committed nothing, when ingest is stopped while it waits on members', async () => {
  const { kafka, commits, connected } = fakeKafka({ t: [{ committed: '-1', high: '5' }] }, () => ({
    error: MEMBERS(),
  }));
  const stop = new AbortController();
  const pin = pinGroupStart(kafka, 'group', ['t'], capturingLog(), { deadlineMs: 60_000, signal: stop.signal });
  await new Promise((r) => setTimeout(r, 300)); // into its waits
  const stopped = Date.now();
  stop.abort();
  await expect(pin).rejects.toThrow(IngestStartInterrupted);
  expect(Date.now() - stopped).toBeLessThan(1000);
  expect(commits).toEqual([]);
  expect(connected()).toBe(0);
  // Already stopped before it begins: it does not begin.
  await expect(pinGroupStart(kafka, 'group', ['t'], capturingLog(), { signal: stop.signal })).rejects.toThrow(
    IngestStartInterrupted,
  );
});

it('ends by its deadline even when every answer is slow (each attempt gets only what is left)', async () => {
  const { kafka } = fakeKafka({ t: [{ committed: '-1', high: '5' }] });
  const slow = kafka.admin() as unknown as { fetchOffsets: (...args: unknown[]) => Promise<unknown> };
  const fetchOffsets = slow.fetchOffsets;
  slow.fetchOffsets = async (...args: unknown[]) => {
    await new Promise((r) => setTimeout(r, 900));
    return fetchOffsets(...args);
  };
  const started = Date.now();
  await expect(pinGroupStart(kafka, 'group', ['t'], capturingLog(), { deadlineMs: 1500 })).rejects.toThrow(
    /within 2 s: no answer in time/,
  );
  // Without the cap an attempt could run its full 15 s past the deadline.
  expect(Date.now() - started).toBeLessThan(3000);
});

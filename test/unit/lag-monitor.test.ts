import {
  describeStall,
  readings,
  StallTracker,
  startLagMonitor,
  type LagAdmin,
  type LagMonitor,
} from '../../ingest/lag-monitor';
import type { Logger } from '../../shared/logger';
import { createMetrics, type Metrics } from '../../shared/metrics';

/**
 * The lag monitor's logic with a fake admin client and a clock the test moves; test/integration/lag-monitor.test.ts
 * runs it against the real broker.
 */

const TOPIC = 'apexflow.leads.created';

describe('readings', () => {
  const ends = [
    [
      { partition: 0, low: '0', high: '10' },
      { partition: 1, low: '5', high: '9' },
      { partition: 2, low: '0', high: '4' },
      { partition: 3, low: '0', high: '0' },
    ],
  ];

  it('measures lag from the committed offset, from the low watermark where the group committed nothing', () => {
    const committed = [{ topic: TOPIC, partitions: [{ partition: 0, offset: '7' }] }];
    expect(readings([TOPIC], committed, ends, true)).toEqual([
      { topic: TOPIC, partition: 0, position: 7, lag: 3 },
      { topic: TOPIC, partition: 1, position: 5, lag: 4 },
      { topic: TOPIC, partition: 2, position: 0, lag: 4 },
      { topic: TOPIC, partition: 3, position: 0, lag: 0 },
    ]);
  });

  it('lists partitions in order whatever order the broker answers in', () => {
    const reversed = [[...ends[0]].reverse()];
    expect(readings([TOPIC], [], reversed, true).map((r) => r.partition)).toEqual([0, 1, 2, 3]);
  });

  it('starts an uncommitted group at the end when it does not read from the beginning', () => {
    expect(readings([TOPIC], [], ends, false).map((r) => r.lag)).toEqual([0, 0, 0, 0]);
  });

  it('does not count records retention deleted, nor a committed offset past the end (topic re-created)', () => {
    const committed = [
      {
        topic: TOPIC,
        partitions: [
          { partition: 1, offset: '2' },
          { partition: 2, offset: '600' },
        ],
      },
    ];
    const [, retained, recreated] = readings([TOPIC], committed, ends, true);
    expect(retained).toMatchObject({ position: 5, lag: 4 });
    expect(recreated).toMatchObject({ position: 600, lag: 0 });
  });

  it('keeps every topic apart', () => {
    const committed = [
      { topic: 'b', partitions: [{ partition: 0, offset: '1' }] },
      { topic: 'a', partitions: [{ partition: 0, offset: '3' }] },
    ];
    const both = readings(['a', 'b'], committed, [[{ partition: 0, low: '0', high: '3' }], [ends[0][0]]], true);
    expect(both).toEqual([
      { topic: 'a', partition: 0, position: 3, lag: 0 },
      { topic: 'b', partition: 0, position: 1, lag: 9 },
    ]);
  });
});

describe('StallTracker', () => {
  const at = (position: number, lag: number) => ({ topic: TOPIC, partition: 2, position, lag });

  it('marks a partition stalled once it has had lag with no progress for the stall time', () => {
    const t = new StallTracker(60_000);
    t.update(at(100, 12), 0);
    t.update(at(100, 12), 59_999);
    expect(t.stalled(59_999)).toEqual([]);
    t.update(at(100, 12), 60_000);
    expect(t.stalled(75_000)).toEqual([{ topic: TOPIC, partition: 2, lag: 12, since: new Date(0) }]);
  });

  it('restarts the clock whenever the committed offset moves', () => {
    const t = new StallTracker(60_000);
    t.update(at(100, 12), 0);
    t.update(at(101, 50), 50_000);
    t.update(at(101, 50), 100_000);
    expect(t.stalled(100_000)).toEqual([]);
    expect(t.stalled(110_000)).toMatchObject([{ lag: 50, since: new Date(50_000) }]);
  });

  it('does not call an idle partition stalled the moment a record arrives', () => {
    const t = new StallTracker(60_000);
    t.update(at(100, 0), 0);
    t.update(at(100, 0), 3_600_000);
    t.update(at(100, 1), 3_605_000);
    expect(t.stalled(3_605_000)).toEqual([]);
    expect(t.stalled(3_665_000)).toHaveLength(1);
  });

  it('clears a stall as soon as the lag is gone, even with the offset unchanged (records deleted)', () => {
    const t = new StallTracker(1000);
    t.update(at(100, 5), 0);
    expect(t.stalled(2000)).toHaveLength(1);
    t.update(at(100, 0), 2000);
    expect(t.stalled(2000)).toEqual([]);
  });

  it('names the partition, the time and the lag', () => {
    const s = { topic: TOPIC, partition: 2, lag: 12, since: new Date(1000) };
    expect(describeStall(s, 76_000)).toBe('partition apexflow.leads.created/2 stalled for 75 s with lag 12');
  });
});

/** A broker with one topic of three partitions whose offsets and behaviour the test sets. */
class FakeBroker {
  high = ['10', '10', '0'];
  committed: Record<number, string> = { 0: '4' };
  polls = 0;
  admins = 0;
  disconnects = 0;
  fail: Error | undefined;
  hang = false;

  admin(): LagAdmin {
    this.admins += 1;
    return {
      connect: async () => undefined,
      disconnect: async () => {
        this.disconnects += 1;
      },
      fetchOffsets: async () => {
        if (this.hang) return new Promise(() => undefined);
        if (this.fail) throw this.fail;
        const partitions = Object.entries(this.committed).map(([p, offset]) => ({ partition: Number(p), offset }));
        return [{ topic: TOPIC, partitions }];
      },
      fetchTopicOffsets: async () => {
        this.polls += 1;
        return this.high.map((high, partition) => ({ partition, low: '0', high }));
      },
    };
  }

  /** Resolves after `n` more polls have read the watermarks. */
  async nextPolls(n = 2): Promise<void> {
    const target = this.polls + n;
    const deadline = Date.now() + 5000;
    while (this.polls < target) {
      if (Date.now() > deadline) throw new Error(`only ${this.polls} polls of ${target}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}

describe('startLagMonitor', () => {
  let broker: FakeBroker;
  let metrics: Metrics;
  let clock: number;
  let monitor: LagMonitor | undefined;
  const log = { warn: jest.fn(), info: jest.fn() };

  const start = (opts: { pollTimeoutMs?: number } = {}) =>
    (monitor = startLagMonitor({
      kafka: broker,
      groupId: 'g',
      topics: [TOPIC],
      metrics,
      log: log as unknown as Logger,
      intervalMs: 10,
      stallSeconds: 60,
      now: () => clock,
      ...opts,
    }));
  const gauge = async (name: 'consumerLag' | 'committedOffset' | 'partitionStalled') =>
    (await metrics[name].get()).values.map((v) => [v.labels.partition, v.value]);

  beforeEach(() => {
    broker = new FakeBroker();
    metrics = createMetrics();
    clock = 1_000_000;
    log.warn.mockClear();
    log.info.mockClear();
  });
  afterEach(() => monitor?.stop());

  it('sets lag and committed offset for every partition on its own timer, with no batch anywhere', async () => {
    start();
    await broker.nextPolls();
    expect(await gauge('consumerLag')).toEqual([
      ['0', 6],
      ['1', 10],
      ['2', 0],
    ]);
    expect(await gauge('committedOffset')).toEqual([
      ['0', 4],
      ['1', 0],
      ['2', 0],
    ]);
    expect(await gauge('partitionStalled')).toEqual([
      ['0', 0],
      ['1', 0],
      ['2', 0],
    ]);
  });

  it('reports partitions with lag and no progress for stallSeconds, in stalled(), the gauge, the log and check()', async () => {
    start();
    await broker.nextPolls();
    await expect(monitor!.check()).resolves.toBeUndefined();
    clock += 75_000;
    await broker.nextPolls();
    expect(monitor!.stalled().map((s) => [s.partition, s.lag])).toEqual([
      [0, 6],
      [1, 10],
    ]);
    expect(await gauge('partitionStalled')).toEqual([
      ['0', 1],
      ['1', 1],
      ['2', 0],
    ]);
    await expect(monitor!.check()).rejects.toThrow(
      `partition ${TOPIC}/0 stalled for 75 s with lag 6; partition ${TOPIC}/1 stalled for 75 s with lag 10`,
    );
    expect(log.warn).toHaveBeenCalledTimes(2); // once per partition, not once per poll

    broker.committed = { 0: '10', 1: '3' };
    await broker.nextPolls();
    expect(monitor!.stalled()).toEqual([]);
    expect(await gauge('partitionStalled')).toEqual([
      ['0', 0],
      ['1', 0],
      ['2', 0],
    ]);
    await expect(monitor!.check()).resolves.toBeUndefined();
  });

  it('survives a failing broker: logs once (rate-limited), reports lag unknown, recovers by itself', async () => {
    broker.fail = new Error('Connection error: ECONNREFUSED');
    start();
    await new Promise((r) => setTimeout(r, 100)); // some ten failed polls
    expect(broker.admins).toBeGreaterThan(3); // each failure drops the connection
    expect(log.warn).toHaveBeenCalledTimes(1);
    expect(log.warn.mock.calls[0][1]).toBe('Could not read consumer lag from Kafka; retrying');
    expect(monitor!.lastRead()).toBeUndefined(); // no reading yet: the watchdog does not act on stale stalls
    clock += 61_000;
    await expect(monitor!.check()).rejects.toThrow(
      'consumer lag unknown: not read from Kafka for 61 s (Connection error: ECONNREFUSED)',
    );

    broker.fail = undefined;
    await broker.nextPolls();
    expect(monitor!.lastRead()).toEqual(new Date(clock));
    await expect(monitor!.check()).resolves.toBeUndefined();
    expect(await gauge('consumerLag')).toHaveLength(3);
  });

  it('bounds a poll that never answers, and still stops promptly', async () => {
    broker.hang = true;
    start({ pollTimeoutMs: 30 });
    await new Promise((r) => setTimeout(r, 150));
    expect(broker.admins).toBeGreaterThan(1); // timed out, dropped, reconnected
    expect(broker.disconnects).toBeGreaterThan(0);
    const started = Date.now();
    await monitor!.stop();
    expect(Date.now() - started).toBeLessThan(1500);
    const admins = broker.admins;
    await new Promise((r) => setTimeout(r, 60));
    expect(broker.admins).toBe(admins); // no poll after stop()
  });
});

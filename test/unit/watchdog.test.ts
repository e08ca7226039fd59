import fc from 'fast-check';
import { createConsumerRestarter, type ConsumerRestarter } from '../../ingest/consumer-restart';
import type { StalledPartition } from '../../ingest/lag-monitor';
import {
  restartDue,
  startWatchdog,
  type AssignedPartition,
  type Watchdog,
  type WatchdogView,
} from '../../ingest/watchdog';
import type { Logger } from '../../shared/logger';
import { createMetrics, initAlertSeries, type Metrics } from '../../shared/metrics';

const AFTER = 120_000;
const TOPIC = 'apexflow.leads.created';

describe('restartDue', () => {
  const partition = fc.record({ topic: fc.constantFrom('a', 'b'), partition: fc.integer({ min: 0, max: 3 }) });
  const view = fc
    .record({
      now: fc.integer({ min: 1_000_000, max: 2_000_000 }),
      afterMs: fc.integer({ min: 1000, max: 300_000 }),
      paused: fc.boolean(),
      readAge: fc.option(fc.integer({ min: 0, max: 600_000 }), { nil: undefined }),
      assignment: fc.uniqueArray(partition, { selector: (p) => `${p.topic}/${p.partition}`, maxLength: 4 }),
      stalled: fc.uniqueArray(
        fc.record({ p: partition, age: fc.integer({ min: 0, max: 600_000 }), lag: fc.integer({ min: 1, max: 99 }) }),
        { selector: (s) => `${s.p.topic}/${s.p.partition}`, maxLength: 5 },
      ),
    })
    .map(({ now, afterMs, paused, readAge, assignment, stalled }): WatchdogView => ({
      now,
      afterMs,
      paused,
      readAt: readAge === undefined ? undefined : now - readAge,
      assignment,
      stalled: stalled.map(({ p, age, lag }) => ({ ...p, lag, since: new Date(now - age) })),
    }));
  const owns = (v: WatchdogView, s: StalledPartition) =>
    v.assignment.some((a) => a.topic === s.topic && a.partition === s.partition);
  const overdue = (v: WatchdogView, s: StalledPartition) => v.now - s.since.getTime() >= v.afterMs;

  it('is due exactly when not paused, the lag reading is fresh, and an overdue stall is ours (or we own nothing)', () => {
    fc.assert(
      fc.property(view, (v) => {
        const fresh = v.readAt !== undefined && v.now - v.readAt <= v.afterMs;
        const candidates = v.stalled.filter((s) => overdue(v, s) && (v.assignment.length === 0 || owns(v, s)));
        const due = restartDue(v);
        expect(due !== undefined).toBe(!v.paused && fresh && candidates.length > 0);
        if (due === undefined) return;
        expect(due.reason).toBe(v.assignment.length === 0 ? 'unassigned' : 'stalled');
        expect(due.partitions).toEqual(candidates);
      }),
    );
  });

  it('never restarts a paused consumer, whatever is stalled', () => {
    fc.assert(fc.property(view, (v) => expect(restartDue({ ...v, paused: true })).toBeUndefined()));
  });

  it('leaves partitions owned by another member to that member', () => {
    const now = 5_000_000;
    const stalled = [{ topic: TOPIC, partition: 2, lag: 40, since: new Date(now - 600_000) }];
    const base = { now, afterMs: AFTER, paused: false, readAt: now, stalled };
    expect(restartDue({ ...base, assignment: [{ topic: TOPIC, partition: 0 }] })).toBeUndefined();
    expect(restartDue({ ...base, assignment: [{ topic: TOPIC, partition: 2 }] })).toEqual({
      reason: 'stalled',
      partitions: stalled,
    });
    expect(restartDue({ ...base, assignment: [] })).toEqual({ reason: 'unassigned', partitions: stalled });
  });
});

/** A consumer whose disconnect and start answer as each test says, recording the calls in order. */
class FakeConsumer {
  calls: string[] = [];
  assigned: AssignedPartition[] = [{ topic: TOPIC, partition: 0 }];
  paused = false;
  disconnectWith: () => Promise<void> = () => Promise.resolve();
  startWith: () => Promise<void> = () => Promise.resolve();
  assignment = () => this.assigned;
  isPaused = () => this.paused;
  disconnect = () => {
    this.calls.push('disconnect');
    return this.disconnectWith();
  };
  startFresh = () => {
    this.calls.push('start');
    return this.startWith();
  };
  restarts = () => this.calls.filter((c) => c === 'start').length;
}

const never = () => new Promise<void>(() => undefined);

describe('startWatchdog', () => {
  let consumer: FakeConsumer;
  let stalled: StalledPartition[];
  let metrics: Metrics;
  let exit: jest.Mock;
  let watchdog: Watchdog | undefined;
  let restarter: ConsumerRestarter | undefined;
  const log = { warn: jest.fn(), info: jest.fn(), error: jest.fn(), fatal: jest.fn() };

  /** The watchdog and the restarter it shares with the consumer's crash listener, as ingest/consumer.ts wires them. */
  const start = (opts: { disconnectTimeoutMs?: number; startTimeoutMs?: number } = {}) => {
    restarter = createConsumerRestarter({ consumer, metrics, log: log as unknown as Logger, exit, ...opts });
    watchdog = startWatchdog({
      consumer,
      monitor: { stalled: () => stalled, lastRead: () => new Date() },
      restarter,
      log: log as unknown as Logger,
      afterMs: AFTER,
      checkEveryMs: 1000,
    });
  };
  /** What the ingest shutdown does to both. */
  const stopBoth = () => {
    watchdog?.stop();
    restarter?.stop();
  };
  /** Partition 0 (ours by default) stalls from now on. */
  const stallNow = (partition = 0) => {
    stalled = [{ topic: TOPIC, partition, lag: 12, since: new Date() }];
  };
  const restartCount = async (reason: string) =>
    (await metrics.consumerRestarts.get()).values.find((v) => v.labels.reason === reason)?.value;

  beforeEach(() => {
    jest.useFakeTimers();
    consumer = new FakeConsumer();
    stalled = [];
    metrics = createMetrics();
    initAlertSeries(metrics);
    exit = jest.fn();
    for (const fn of Object.values(log)) fn.mockClear();
  });
  afterEach(() => {
    stopBoth();
    jest.useRealTimers();
  });

  it('restarts the consumer once a partition it owns has been stalled for afterMs: disconnect, then a fresh one', async () => {
    start();
    stallNow();
    await jest.advanceTimersByTimeAsync(AFTER - 2000);
    expect(consumer.calls).toEqual([]);
    await jest.advanceTimersByTimeAsync(3000);
    expect(consumer.calls).toEqual(['disconnect', 'start']);
    expect(await restartCount('stalled')).toBe(1);
    expect(await restartCount('unassigned')).toBe(0);
    expect(log.warn.mock.calls[0][1]).toBe(
      `Ingest watchdog: restarting the Kafka consumer (stalled: ${TOPIC}/0 stalled for 120 s or more)`,
    );
    expect(log.warn.mock.calls[0][0]).toMatchObject({ reason: 'stalled', partitions: [`${TOPIC}/0`] });
    expect(log.info).toHaveBeenCalledWith(
      { reason: 'stalled', partitions: [`${TOPIC}/0`] },
      'Kafka consumer restarted (stalled)',
    );
    expect(exit).not.toHaveBeenCalled();
  });

  it("leaves another member's stalled partition alone, and restarts when it owns no partition at all", async () => {
    start();
    stallNow(2);
    await jest.advanceTimersByTimeAsync(3 * AFTER);
    expect(consumer.calls).toEqual([]);
    consumer.assigned = [];
    await jest.advanceTimersByTimeAsync(2000);
    expect(consumer.calls).toEqual(['disconnect', 'start']);
    expect(await restartCount('unassigned')).toBe(1);
  });

  it('does not restart while ingestion is paused for a Postgres outage, and does once the pause is over', async () => {
    start();
    stallNow();
    consumer.paused = true;
    await jest.advanceTimersByTimeAsync(10 * AFTER);
    expect(consumer.calls).toEqual([]);
    consumer.paused = false;
    await jest.advanceTimersByTimeAsync(2000);
    expect(consumer.restarts()).toBe(1);
  });

  it('gives a freshly started consumer afterMs before the first restart, even on an old stall', async () => {
    stalled = [{ topic: TOPIC, partition: 0, lag: 12, since: new Date(Date.now() - 3_600_000) }];
    start();
    await jest.advanceTimersByTimeAsync(AFTER - 2000);
    expect(consumer.calls).toEqual([]);
    await jest.advanceTimersByTimeAsync(3000);
    expect(consumer.restarts()).toBe(1);
  });

  it('keeps a cooldown between restarts, doubling while the stall lasts (at most 8 × afterMs), reset once it ends', async () => {
    const at: number[] = [];
    consumer.startWith = () => {
      at.push(Date.now());
      return Promise.resolve();
    };
    start();
    stallNow();
    await jest.advanceTimersByTimeAsync(40 * AFTER);
    const gaps = at.slice(1).map((t, i) => Math.round((t - at[i]) / AFTER));
    expect(gaps).toEqual([1, 2, 4, 8, 8, 8, 8]);

    stalled = []; // the stall ended: the next one starts with the short cooldown again
    await jest.advanceTimersByTimeAsync(2000);
    stallNow();
    const before = at.length;
    await jest.advanceTimersByTimeAsync(AFTER + 2000);
    expect(at.length).toBe(before + 1);
    await jest.advanceTimersByTimeAsync(AFTER + 2000);
    expect(at.length).toBe(before + 2);
  });

  it('abandons a disconnect that hangs past its bound and starts the fresh consumer anyway', async () => {
    consumer.disconnectWith = never;
    start({ disconnectTimeoutMs: 10_000 });
    stallNow();
    await jest.advanceTimersByTimeAsync(AFTER + 2000);
    expect(consumer.calls).toEqual(['disconnect']);
    await jest.advanceTimersByTimeAsync(10_000);
    expect(consumer.calls).toEqual(['disconnect', 'start']);
    expect(log.warn).toHaveBeenCalledWith(
      { reason: 'stalled', err: undefined, timeout_ms: 10_000 },
      'The old Kafka consumer did not disconnect within 10000 ms; abandoned it',
    );
    expect(exit).not.toHaveBeenCalled();
  });

  it('exits the process with code 1 when the fresh consumer is not running within its bound', async () => {
    consumer.startWith = never;
    start({ startTimeoutMs: 60_000 });
    stallNow();
    await jest.advanceTimersByTimeAsync(AFTER + 2000);
    expect(consumer.calls).toEqual(['disconnect', 'start']);
    expect(exit).not.toHaveBeenCalled();
    await jest.advanceTimersByTimeAsync(60_000);
    expect(exit).toHaveBeenCalledWith(1);
    expect(log.fatal.mock.calls[0][1]).toBe(
      'Could not restart the Kafka consumer (not running within 60000 ms); exiting with code 1 so that the process is restarted',
    );
  });

  it('exits with code 1 when the fresh consumer fails to start', async () => {
    consumer.startWith = () => Promise.reject(new Error('Connection error: ECONNREFUSED'));
    start();
    stallNow();
    await jest.advanceTimersByTimeAsync(AFTER + 2000);
    expect(exit).toHaveBeenCalledWith(1);
    expect(log.fatal.mock.calls[0][0]).toMatchObject({ err: 'Connection error: ECONNREFUSED' });
  });

  it('lets a shutdown that begins during a hung restart take over: no fresh consumer, no exit', async () => {
    consumer.disconnectWith = never;
    start({ disconnectTimeoutMs: 10_000 });
    stallNow();
    await jest.advanceTimersByTimeAsync(AFTER + 2000);
    stopBoth();
    await jest.advanceTimersByTimeAsync(10 * AFTER);
    expect(consumer.calls).toEqual(['disconnect']);
    expect(exit).not.toHaveBeenCalled();
  });
});

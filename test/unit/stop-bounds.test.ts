import type pg from 'pg';
import type { Admin, Kafka } from 'kafkajs';
import { endPool } from '../../shared/db';
import {
  createProducer,
  createTopicCatalog,
  disconnectAdmin,
  PRODUCER_DISCONNECT_TIMEOUT_MS,
} from '../../shared/kafka';
import type { Logger } from '../../shared/logger';
import { untilAborted } from '../../shared/timeout';
import { startDlqGrowthWatch } from '../../notifications/dlq-growth';
import type { EmitDeps } from '../../notifications/emit';
import { eventually } from '../support/sink';
import { afterStopWaitMs } from '../../cli/runtime';
import type { Worker } from '@temporalio/worker';
import { stopWorker } from '../../worker/worker';
import { closeWithin, resetStopClock, startStopClock, stopWait } from '../../shared/stop-clock';
import { CONSUMER_DISCONNECT_TIMEOUT_MS, stopDisconnectTimeoutMs } from '../../ingest/consumer-restart';
import { startGraceAfterStopMs } from '../../ingest/consumer';

// Waits a stop must not sit through: a start waiting out an outage, a pool whose client never comes back, and a
// periodic check waiting on a query.

const never = new Promise<never>(() => undefined);

describe('untilAborted', () => {
  it.each([
    ['already aborted', true],
    ['aborted while waiting', false],
  ])('rejects with the interruption when %s', async (_, before) => {
    const stop = new AbortController();
    if (before) stop.abort();
    const waiting = untilAborted(never, stop.signal, () => new Error('interrupted'));
    stop.abort();
    await expect(waiting).rejects.toThrow('interrupted');
  });

  it('leaves no unhandled rejection behind when the promise it gave up on fails later', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const stop = new AbortController();
      stop.abort();
      let fail = (_: Error) => {};
      const failing = new Promise<never>((_, reject) => (fail = reject));
      await expect(untilAborted(failing, stop.signal, () => new Error('interrupted'))).rejects.toThrow('interrupted');
      fail(new Error('late'));
      await new Promise((r) => setTimeout(r, 50));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it("passes the promise's outcome through, and leaves no listener on the signal", async () => {
    const { signal } = new AbortController();
    const added = jest.spyOn(signal, 'addEventListener');
    const removed = jest.spyOn(signal, 'removeEventListener');
    await expect(untilAborted(Promise.resolve(7), signal, () => new Error('no'))).resolves.toBe(7);
    await expect(untilAborted(Promise.reject(new Error('own')), signal, () => new Error('no'))).rejects.toThrow('own');
    expect(added).toHaveBeenCalledTimes(2);
    expect(removed.mock.calls.map((call) => call[1])).toEqual(added.mock.calls.map((call) => call[1]));
  });
});

describe('endPool', () => {
  const logger = () => {
    const warnings: string[] = [];
    return { warnings, log: { warn: (_: unknown, msg: string) => warnings.push(msg) } as unknown as Logger };
  };

  it('returns within its bound when a client is never given back, and says so', async () => {
    const { warnings, log } = logger();
    const pool = { end: () => never, totalCount: 3, idleCount: 1 } as unknown as pg.Pool;
    const started = Date.now();
    await endPool(pool, log, 200);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(warnings).toEqual([expect.stringMatching(/still busy 200 ms into the stop/)]);
  });

  it('is quiet when the pool closes, and names a failure to close', async () => {
    const quiet = logger();
    await endPool({ end: () => Promise.resolve() } as unknown as pg.Pool, quiet.log, 200);
    expect(quiet.warnings).toEqual([]);
    const failing = logger();
    await endPool({ end: () => Promise.reject(new Error('boom')) } as unknown as pg.Pool, failing.log, 200);
    expect(failing.warnings).toEqual(['Could not close the Postgres pool; left it']);
  });
});

describe('the DLQ growth watch', () => {
  it('stops within its bound while a check waits on a query that never answers', async () => {
    let queried = false;
    const pool = {
      query: () => {
        queried = true;
        return never;
      },
    };
    const deps = {
      pool,
      log: { warn: () => undefined },
      config: { signingSecret: 'secret', dlqGrowth: { intervalMs: 20, threshold: 1, windowMs: 60_000 } },
    } as unknown as EmitDeps;
    const watch = startDlqGrowthWatch(deps, 200);
    await eventually(async () => queried, 'a check under way', 2_000, 10);
    const started = Date.now();
    await watch.stop();
    expect(Date.now() - started).toBeLessThan(2_000);
  });
});

describe('Kafka admin clients', () => {
  // kafkajs's disconnect waits for the requests in flight; a frozen broker answers them only at their timeout.
  const stuckAdmin = () =>
    ({
      connect: () => Promise.resolve(),
      listTopics: () => Promise.resolve(['a']),
      disconnect: () => never,
    }) as unknown as Admin;

  it('disconnectAdmin gives up within its bound, never rejects, and says what it abandoned', async () => {
    const warnings: string[] = [];
    const log = { warn: (_: unknown, msg: string) => warnings.push(msg) } as unknown as Logger;
    const started = Date.now();
    await disconnectAdmin(stuckAdmin(), 200, log);
    await disconnectAdmin({ disconnect: () => Promise.reject(new Error('gone')) } as unknown as Admin, 200, log);
    await disconnectAdmin({ disconnect: () => Promise.resolve() } as unknown as Admin, 200, log);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(warnings).toEqual([
      'A Kafka admin client did not disconnect within 200 ms; abandoned it',
      'A Kafka admin client failed to disconnect; abandoned it',
    ]);
  });

  it("the replay producer's disconnect gives up within its bound while kafkajs waits on a frozen broker, and says so", async () => {
    const warnings: string[] = [];
    const log = { warn: (_: unknown, msg: string) => warnings.push(msg) } as unknown as Logger;
    const kafka = {
      admin: () => stuckAdmin(),
      producer: () => ({
        on: () => () => undefined,
        connect: () => Promise.resolve(),
        transaction: () => Promise.resolve({ abort: () => Promise.resolve() }),
        disconnect: () => never,
      }),
    } as unknown as Kafka;
    const producer = createProducer(kafka, log);
    await producer.connect();
    const started = Date.now();
    await producer.disconnect();
    expect(Date.now() - started).toBeLessThan(PRODUCER_DISCONNECT_TIMEOUT_MS + 2_000);
    expect(warnings).toEqual([
      `The Kafka producer did not disconnect within ${PRODUCER_DISCONNECT_TIMEOUT_MS} ms; abandoned it`,
    ]);
  });

  it("the topic catalog's close returns within its bound while its admin cannot disconnect", async () => {
    const kafka = { admin: () => stuckAdmin() } as unknown as Kafka;
    const catalog = createTopicCatalog(kafka, { disconnectTimeoutMs: 200 });
    await expect(catalog.missing(['a', 'b'])).resolves.toEqual(['b']);
    const started = Date.now();
    await catalog.close();
    expect(Date.now() - started).toBeLessThan(2_000);
  });
});

/** Stop budgets (SHUTDOWN_TIMEOUT) from 1 ms to an hour: edge values and a seeded spread. */
function budgets(seed: number): number[] {
  const next = () => (seed = (seed * 48271) % 2147483647);
  return [
    1,
    250,
    999,
    3_000,
    8_000,
    10_000,
    24_000,
    30_000,
    30_001,
    3_600_000,
    ...Array.from({ length: 300 }, () => next() % 120_000),
  ];
}

describe('shares of the stop budget', () => {
  it("ingest's consumer leave: at most 10 s, and a third of the budget or all but the 8 s the stoppers after it need", () => {
    for (const timeoutMs of budgets(7)) {
      const bound = stopDisconnectTimeoutMs(timeoutMs);
      const ok =
        bound >= 0 && bound <= CONSUMER_DISCONNECT_TIMEOUT_MS && (bound * 3 <= timeoutMs || bound + 8_000 <= timeoutMs);
      expect({ timeoutMs, bound, ok }).toEqual({ timeoutMs, bound, ok: true });
    }
    expect([10_000, 15_000, 30_000].map(stopDisconnectTimeoutMs)).toEqual([3_333, 7_000, 10_000]);
    expect(stopDisconnectTimeoutMs(undefined)).toBe(CONSUMER_DISCONNECT_TIMEOUT_MS);
  });

  it("ingest's start grace after a stop: a quarter of the budget, at most 5 s, in whole milliseconds", () => {
    for (const timeoutMs of budgets(13)) {
      const grace = startGraceAfterStopMs(timeoutMs);
      const ok = Number.isInteger(grace) && grace >= 0 && grace <= 5_000 && grace * 4 <= timeoutMs;
      expect({ timeoutMs, grace, ok }).toEqual({ timeoutMs, grace, ok: true });
    }
    expect(startGraceAfterStopMs(undefined)).toBe(5_000);
  });

  it('the exit after a stop waits at most 2 s, and always ends a margin (250 ms to 1 s) before the deadline', () => {
    let seed = 11;
    const next = () => (seed = (seed * 48271) % 2147483647);
    for (const timeoutMs of budgets(17)) {
      const signalAt = 1_000_000;
      const now = signalAt + (next() % (timeoutMs + 2_000)); // stopped early, near the deadline, or past it
      const wait = afterStopWaitMs(signalAt, timeoutMs, now);
      const deadline = signalAt + timeoutMs;
      const ok = wait >= 0 && wait <= 2_000 && (wait === 0 || now + wait <= deadline - 250);
      expect({ timeoutMs, now, wait, ok }).toEqual({ timeoutMs, now, wait, ok: true });
    }
    expect(afterStopWaitMs(0, 30_000, 5_000)).toBe(2_000);
    expect(afterStopWaitMs(0, 10_000, 8_500)).toBe(1_000); // 500 ms before the 10 s deadline
  });
});

describe("the stop's clock", () => {
  afterEach(() => resetStopClock());

  it('cuts every bounded wait to end a margin before the deadline once a stop began, and leaves it alone before', () => {
    expect(stopWait(5_000)).toBe(5_000);
    for (const timeoutMs of budgets(23)) {
      const signalAt = 2_000_000;
      startStopClock(signalAt, timeoutMs);
      for (const at of [signalAt, signalAt + timeoutMs / 2, signalAt + timeoutMs, signalAt + timeoutMs + 5_000]) {
        const wait = stopWait(5_000, at);
        const ok = wait >= 0 && wait <= 5_000 && (wait === 0 || at + wait <= signalAt + timeoutMs - 250);
        expect({ timeoutMs, at, wait, ok }).toEqual({ timeoutMs, at, wait, ok: true });
      }
    }
  });

  it('a series of closes that never finish ends before the deadline, each logged as abandoned', async () => {
    const warnings: string[] = [];
    const log = { warn: (_: unknown, msg: string) => warnings.push(msg) } as unknown as Logger;
    const started = Date.now();
    startStopClock(started, 1_000); // 250 ms margin: the waits may take 750 ms in all
    for (const what of ['A', 'B', 'C', 'D']) await closeWithin(never, 400, log, what);
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(warnings).toHaveLength(4);
    expect(warnings[0]).toBe('A did not close within 400 ms; abandoned it');
    expect(warnings[3]).toMatch(/^D did not close within \d+ ms; abandoned it$/);
  });
});

describe("the Temporal worker's stop", () => {
  type State = ReturnType<Worker['getState']>;
  const fakeWorker = (states: State[]) => {
    let state: State = 'RUNNING';
    return {
      shutdown: () => {
        const next = [...states];
        const step = () => {
          state = next.shift() ?? state;
          if (next.length > 0) setTimeout(step, 20);
        };
        step();
      },
      getState: () => state,
    };
  };

  it('gives run() a second once the SDK reports STOPPED, then leaves it (a frozen server holds its end)', async () => {
    const started = Date.now();
    expect(await stopWorker(fakeWorker(['STOPPING', 'DRAINING', 'DRAINED', 'STOPPED']), never)).toBe(false);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_000);
    expect(Date.now() - started).toBeLessThan(3_000);
  });

  it('returns as soon as run() ends, and never waits past its bound while the SDK still drains', async () => {
    let end = () => {};
    const running = new Promise<void>((r) => (end = r));
    setTimeout(() => end(), 100);
    expect(await stopWorker(fakeWorker(['STOPPING', 'DRAINING']), running)).toBe(true);
    const started = Date.now();
    expect(await stopWorker(fakeWorker(['STOPPING', 'DRAINING']), never, 300)).toBe(false);
    expect(Date.now() - started).toBeLessThan(1_500);
  });
});

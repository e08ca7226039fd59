import type { Context } from '@temporalio/activity';
import fc from 'fast-check';
import {
  beatDetails,
  HEARTBEAT_THROTTLE_MS,
  LEASE_MARGIN_MS,
  leaseAttempt,
  leaseHeartbeatTimeoutMs,
  type AskServer,
} from '../../worker/attempt-lease';

/**
 * worker/attempt-lease.ts on its own, against a fake server that records what the SDK sends: the lease grows only from
 * heartbeats the server recorded, by the making time of the one it last recorded, never more; stamped details come
 * back as they were made; the server's word that the attempt is over ends it, no answer does not.
 */

const HEARTBEAT_TIMEOUT_MS = 90_000;

beforeEach(() => jest.useFakeTimers({ doNotFake: ['nextTick', 'queueMicrotask'] }));
afterEach(() => jest.useRealTimers());

/** A context of attempt `attempt` and a server holding `held` (what the SDK last sent, JSON round-tripped). */
function world(attempt = 1, previous?: unknown) {
  const controller = new AbortController();
  const ctx = {
    info: { attempt, heartbeatTimeoutMs: HEARTBEAT_TIMEOUT_MS, heartbeatDetails: previous },
    cancellationSignal: controller.signal,
  } as unknown as Context;
  const sent: unknown[] = [];
  const server: { pending: number | undefined; held: unknown; answer?: () => Promise<never> } = {
    pending: attempt,
    held: previous,
  };
  const ask: AskServer = async () => {
    if (server.answer) return server.answer();
    return server.pending === undefined ? undefined : { attempt: server.pending, details: server.held };
  };
  // The SDK: sends what it is given, as JSON, to the server (delivered at once unless told otherwise).
  const beat = (details: unknown) => sent.push(details === undefined ? undefined : JSON.parse(JSON.stringify(details)));
  const deliver = () => (server.held = sent[sent.length - 1]);
  return { ctx, sent, server, deliver, leased: leaseAttempt(ctx, beat, ask) };
}

it('stamps only once a send asks for the lease, and gives back every kind of details as they were made', async () => {
  const detailsKinds = fc.oneof(
    fc.constant(undefined),
    fc.integer(),
    fc.string(),
    fc.array(fc.integer()),
    fc.dictionary(fc.string(), fc.jsonValue()),
    fc.record({ cursor: fc.integer(), pageSent: fc.option(fc.array(fc.integer()), { nil: undefined }) }),
    // Details that already hold the stamp's key (another service's): wrapped, not mistaken for a stamp.
    fc.record({ crmEventsBeat: fc.jsonValue() }),
  );
  await fc.assert(
    fc.asyncProperty(detailsKinds, async (details) => {
      const { sent, deliver, leased } = world();
      leased.heartbeat(details);
      expect(sent[0]).toEqual(details === undefined ? undefined : JSON.parse(JSON.stringify(details)));
      const holding = leased.lease.hold(1_000);
      deliver();
      await jest.advanceTimersByTimeAsync(50);
      await holding;
      // Stamped, and read back (by the retry, out of ctx.info) as the JSON of what was made.
      const stamped = sent[sent.length - 1];
      expect(stamped).not.toEqual(sent[0]);
      expect(beatDetails(stamped)).toEqual(details === undefined ? undefined : JSON.parse(JSON.stringify(details)));
    }),
    { numRuns: 200 },
  );
});

it('grows only by the making time of the heartbeat the server recorded last, whatever order answers come in', async () => {
  await fc.assert(
    fc.asyncProperty(
      // Per step: ms before a heartbeat is made, and whether the server has it recorded before the next question.
      fc.array(fc.record({ waitMs: fc.integer({ min: 0, max: 3_000 }), delivered: fc.boolean() }), {
        minLength: 1,
        maxLength: 30,
      }),
      async (steps) => {
        const { sent, server, leased } = world();
        const madeAt: number[] = [];
        const done = new AbortController();
        const holding = leased.lease.hold(1_000, done.signal).catch(() => undefined);
        await jest.advanceTimersByTimeAsync(1);
        madeAt.push(...sent.map(() => performance.now()));
        let recordedMadeAt = -Infinity;
        for (const step of steps) {
          await jest.advanceTimersByTimeAsync(step.waitMs);
          madeAt.push(performance.now());
          leased.heartbeat({ cursor: madeAt.length });
          if (step.delivered) {
            server.held = JSON.parse(JSON.stringify(sent[sent.length - 1]));
            recordedMadeAt = madeAt[madeAt.length - 1];
          }
          leased.keepAlive(); // heartbeats again (not delivered) and asks
          await jest.advanceTimersByTimeAsync(0);
          // Never past the recorded heartbeat's making plus the timeout less the margin.
          expect(leased.lease.until()).toBeLessThanOrEqual(recordedMadeAt + HEARTBEAT_TIMEOUT_MS - LEASE_MARGIN_MS);
          // And grown to it, but for the making times kept one per 100 ms (a heartbeat counts as made no later).
          if (step.delivered) {
            expect(leased.lease.until()).toBeGreaterThan(recordedMadeAt - 100 + HEARTBEAT_TIMEOUT_MS - LEASE_MARGIN_MS);
          }
        }
        done.abort();
        await jest.advanceTimersByTimeAsync(0);
        await holding;
      },
    ),
    { numRuns: 100 },
  );
});

it('ends the attempt when the server has another attempt pending, or none, and not when it cannot be asked', async () => {
  const other = world(1);
  other.server.pending = 2;
  await expect(other.leased.lease.hold(1_000)).rejects.toThrow(
    'Attempt 1 was ended by the Temporal server (attempt 2 is pending)',
  );
  expect(other.leased.signal.aborted).toBe(true);

  const none = world(3);
  none.server.pending = undefined;
  await expect(none.leased.lease.hold(1_000)).rejects.toThrow('no attempt of the activity is pending');

  const gone = world(1);
  gone.server.answer = () => Promise.reject(Object.assign(new Error('5 NOT_FOUND: workflow not found'), { code: 5 }));
  await expect(gone.leased.lease.hold(1_000)).rejects.toThrow('5 NOT_FOUND: workflow not found');

  // Unreachable: it waits (heartbeating at most once per throttle), until the server answers again.
  const cut = world(1);
  cut.server.answer = () => Promise.reject(Object.assign(new Error('14 UNAVAILABLE'), { code: 14 }));
  let held = false;
  const holding = cut.leased.lease.hold(1_000).then(() => (held = true));
  await jest.advanceTimersByTimeAsync(60_000);
  expect({ held, aborted: cut.leased.signal.aborted }).toEqual({ held: false, aborted: false });
  expect(cut.sent.length).toBeLessThanOrEqual(60_000 / HEARTBEAT_THROTTLE_MS + 1);
  delete cut.server.answer;
  cut.deliver();
  await jest.advanceTimersByTimeAsync(1_000);
  await holding;
  expect(held).toBe(true);
});

it('refuses a lease its heartbeat timeout can never give, at once', async () => {
  const controller = new AbortController();
  const ctx = {
    info: { attempt: 1, heartbeatTimeoutMs: 60_000 },
    cancellationSignal: controller.signal,
  } as unknown as Context;
  const leased = leaseAttempt(
    ctx,
    () => undefined,
    async () => ({ attempt: 1, details: undefined }),
  );
  await expect(leased.lease.hold(65_000)).rejects.toThrow(
    `A heartbeat timeout of 60000 ms can never hold a lease of 65000 ms (at least ${leaseHeartbeatTimeoutMs(65_000)} ms is needed`,
  );
});

it('reads a previous attempt stamped details, and a previous worker unstamped ones, as the activity made them', () => {
  expect(world(2, { cursor: 5, crmEventsBeat: { attempt: 1, n: 9 } }).ctx.info.heartbeatDetails).toEqual({
    cursor: 5,
    crmEventsBeat: { attempt: 1, n: 9 },
  });
  expect(beatDetails({ cursor: 5, crmEventsBeat: { attempt: 1, n: 9 } })).toEqual({ cursor: 5 });
  expect(beatDetails({ crmEventsBeat: { attempt: 1, n: 9, wrapped: true }, details: 7 })).toBe(7);
  expect(beatDetails({ crmEventsBeat: { attempt: 1, n: 9, wrapped: true } })).toBeUndefined();
  expect(beatDetails({ cursor: 5 })).toEqual({ cursor: 5 });
  expect(beatDetails(12)).toBe(12);
});

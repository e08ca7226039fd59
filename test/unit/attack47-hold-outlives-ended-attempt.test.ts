import { pageOptions } from '../../workflows/activity-options';
import { cutOffFirstAttempt, timedOutOrGaveUp } from '../support/fake-temporal-attempts';
import { pageSendSetting } from '../support/page-send-setting';

/**
 * attack47 against 0bf5fe9 ("a page is sent only within its attempt's lease").
 *
 * Invariant: everything is bounded: a send waiting for a lease ends (bounded) when its attempt ends, not at the
 * attempt's start-to-close timeout; it does not hold its producer slot and erasure-barrier holder slot, nor ask the
 * server twice a second, for minutes after the server ended the attempt.
 *
 * Attack: a range chunk's attempt 1 sends page P1 at 0.8 s (lease from beat 1: until 85.8 s), then reads page P2 for
 * 25 s; its worker is cut off from the Temporal frontend from 10 s on, for good (Kafka reachable). P2's send (26 s)
 * finds 59.8 s of lease, under a commit phase, and holds. The server times attempt 1 out at 91.1 s (last recorded beat
 * 1.0 s); attempt 2 starts at 92.1 s on a worker that reaches Temporal and completes. The fake models sdk-core's local
 * timers (localTimeoutBufferMs 5 s: the attempt is cancelled heartbeat timeout + 5 s after its last heartbeat report,
 * delivered or not, attack46).
 *
 * Observed: attempt 1's send ends only at 605.1 s (its local start-to-close timer, 10 min + 5 s), after 1643
 * heartbeats and describes into the void once the server had ended it. Expected: it ends within the heartbeat timeout
 * and the local buffer of its last recorded beat (by 96 s): no beat has been confirmed for a whole heartbeat timeout, so
 * the attempt cannot be relied on, and without the hold's beats core's local heartbeat timer would have cancelled it.
 *
 * Suspected cause: worker/attempt-lease.ts:144-152: hold loops until its lease grows or its signal aborts, with no
 * bound of its own; its heartbeat every second (line 147, and keepingAttemptAlive's keepAlive every 5 s,
 * shared/kafka.ts:965-971) resets core's local heartbeat timer whether or not it reaches the server, so the only end
 * left is the start-to-close timer. Unconfirmed heartbeats end nothing (lines 127-129).
 *
 * Fixed: while it stamps, the lease heartbeats to keep its attempt alive only once the server has answered since its
 * last heartbeat (one into the void at most: the SDK's local timer then ends a waiting attempt), a hold gives up once
 * a question went unanswered and a heartbeat timeout has passed since the last heartbeat the server is known to have
 * (worker/attempt-lease.ts), and a wait for a barrier holder slot leaves the queue when its attempt ends
 * (shared/barrier.ts holdBarrier's signal). Attempt 1's send now ends at 91 s.
 */

/** The worker of attempt 1 is cut off from the Temporal frontend from here on (ms): for good (a dead route). */
const CUT_FROM_MS = 10_000;
/** How long attempt 1 reads its second page: its send then needs a new lease. */
const SECOND_READ_MS = 25_000;

beforeEach(() => jest.useFakeTimers({ doNotFake: ['nextTick', 'queueMicrotask'] }));
afterEach(() => jest.useRealTimers());

it('a send waiting for a lease ends soon after the server can no longer keep its attempt alive', async () => {
  const { sendPage } = await pageSendSetting({ from: Infinity, until: Infinity });
  const verdict = await cutOffFirstAttempt(
    pageOptions,
    async (ctx, attempt) => {
      await new Promise((resolve) => setTimeout(resolve, 800));
      await sendPage(ctx, 'P1');
      if (attempt === 1) await new Promise((resolve) => setTimeout(resolve, SECOND_READ_MS));
      await sendPage(ctx, 'P2');
    },
    { cutFromMs: CUT_FROM_MS, runForMs: 700_000 },
  );
  expect(verdict).toEqual({
    first: timedOutOrGaveUp(),
    sendEnded: 'within the heartbeat timeout and its local buffer',
  });
});

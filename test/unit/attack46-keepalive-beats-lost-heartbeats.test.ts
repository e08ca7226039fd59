import { pageOptions } from '../../workflows/activity-options';
import { KEEPALIVE_MS } from '../../worker/send-attempt';
import { fakeActivityServer, timedOutOrGaveUp } from '../support/fake-temporal-attempts';
import { pageSendSetting } from '../support/page-send-setting';

/**
 * attack46 against f583c4b (worker/heartbeat-keepalive.ts: "the server ends a live attempt only at its start-to-close
 * timeout, which its sends settle before, never while it waits").
 *
 * Invariant: a page is committed to the topic twice only when a commit got no answer for its whole commit phase, never
 * because an attempt was ended by the server while it waited and sent the page beside its retry (attack45's invariant,
 * which the keepalive is the fix for).
 *
 * Attack: attack45-barrier-slot-wait-without-heartbeat's setting (five pages hold the barrier's five holder slots
 * through their fences while Kafka is away, 0.1 s to 50 s; page P's attempt waits for a slot), and the worker running
 * P's attempt 1 is cut off from the Temporal frontend from 20 s to 70 s (a frontend restart, a partition: its polls and
 * heartbeat RPCs fail; P's retries run on a worker that reaches Temporal). The keepalive keeps heartbeating into the
 * void: the server hears nothing after 15 s and times attempt 1 out at 45 s (heartbeat timeout 30 s), its retry starts.
 * sdk-core answers a failed heartbeat RPC with a warning only (activity_heartbeat_manager.rs:196-226, no cancel), and
 * resets its local heartbeat timer when the RPC ends, failed or not (handle_report_completed notifies timeout_resetter),
 * so the timer that cancels an attempt whose heartbeats stopped (heartbeat timeout + local_timeout_buffer 5 s,
 * activities.rs:745-780) never fires while the keepalive runs. Attempt 1 does not learn it is over; Kafka is back at
 * 50 s, the slots free, and it sends P beside its retry. The fake server now models those local timers
 * (localTimeoutBufferMs: 5000) and lost heartbeats (lostHeartbeat).
 *
 * Observed: P committed by 2 transactions: "attempt 1 (timed out (heartbeat) at 45.1 s, 3 heartbeats) sent at 54.7 s",
 * and its retry (attempt 2, started at 46 s on a worker that reaches Temporal) sent it too. Expected: committed once.
 * With the keepalive taken out of the list the test passes: attempt 1 heartbeats nothing, core's local heartbeat timer
 * cancels it at 35 s, and its send produces nothing.
 *
 * Suspected cause: worker/heartbeat-keepalive.ts:29-32 beats on a timer of its own whether or not the beats reach the
 * server and whatever the activity is doing: it keeps core's local heartbeat timer from ever firing, while the server
 * still ends the attempt at its heartbeat timeout when the beats are lost; nothing bounds the attempt's sends by the
 * last heartbeat the server acknowledged (worker/send-attempt.ts bounds them by start-to-close only).
 *
 * Fixed: a page is sent only within its attempt's lease (worker/attempt-lease.ts): its heartbeats go to the SDK stamped
 * with a number, the server is asked (a describe of the workflow) which one it recorded last, and the attempt lives at
 * least until that one's making plus the heartbeat timeout; a send waits until that leaves a commit phase (65 s), and
 * stops once the server answers that another attempt is pending. The page's heartbeat timeout grew to 90 s for that.
 * The setting was moved with it: Kafka back at 150 s and the cut-off 20 s to 200 s (the server times attempt 1 out
 * at 105 s; with Kafka back at 50 s attempt 1 sent within its lease and the retry never ran). Fails without the lease
 * (askServerOf answering undefined): P committed twice, attempt 1 sent at 154.7 s.
 */

const KAFKA_DOWN_FROM_MS = 100;
const KAFKA_UP_AT_MS = 150_000;
/**
 * The worker of P's attempt 1 cannot reach Temporal (ms after P's first attempt started): long enough for the server
 * to time attempt 1 out (heartbeat timeout 90 s now, 30 s when the attack was made) and start its retry.
 */
const CUT_FROM_MS = 20_000;
const CUT_UNTIL_MS = 200_000;

beforeEach(() => jest.useFakeTimers({ doNotFake: ['nextTick', 'queueMicrotask'] }));
afterEach(() => jest.useRealTimers());

it('a waiting page whose heartbeats do not reach the server is not kept alive past its heartbeat timeout to send', async () => {
  const { now, holding, holdBarrierSlots, sendPage } = await pageSendSetting({
    from: KAFKA_DOWN_FROM_MS,
    until: KAFKA_UP_AT_MS,
  });
  const others = holdBarrierSlots();
  await jest.advanceTimersByTimeAsync(1_000);

  // Page P of a range replay chunk.
  let firstSettled = Infinity;
  const origin = now();
  const server = fakeActivityServer(
    pageOptions,
    (ctx, attempt) => sendPage(ctx, 'P').finally(() => attempt === 1 && (firstSettled = now() - origin)),
    {
      lostHeartbeat: (attempt, at) => attempt === 1 && at >= CUT_FROM_MS && at < CUT_UNTIL_MS,
      localTimeoutBufferMs: 5_000,
    },
  );
  await jest.advanceTimersByTimeAsync(CUT_UNTIL_MS + 120_000);
  await server.finished;
  await Promise.all(others);

  const produced = holding('P');
  const first = server.attempts[0];
  expect({
    committed: produced.filter((t) => t.committed).length,
    // Attempt 1 began its send after the server had timed it out; it must have produced nothing (P produced once).
    produced: produced.length,
    // Attempt 1 was timed out by the server while cut off, and ended on its side within the heartbeat timeout and the
    // SDK's local buffer of the one heartbeat it made into the void, a keepalive after its last recorded one (not when
    // Kafka was back, or at its start-to-close timeout).
    first: {
      outcome: first.outcome,
      // (plus the fake server's timers, which look every 100 ms)
      bounded: firstSettled <= first.heartbeats[first.heartbeats.length - 1] + KEEPALIVE_MS + 90_000 + 5_000 + 200,
    },
  }).toEqual({ committed: 1, produced: 1, first: { outcome: timedOutOrGaveUp(), bounded: true } });
});

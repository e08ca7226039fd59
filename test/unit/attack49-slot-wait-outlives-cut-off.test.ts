import { pageOptions } from '../../workflows/activity-options';
import { fakeActivityServer, timedOutOrGaveUp } from '../support/fake-temporal-attempts';
import { pageSendSetting } from '../support/page-send-setting';

/**
 * attack49 against 0fc92e6 (AttemptLease: only a hold gives up once Temporal is unreachable; every other wait of a
 * send relies on sdk-core's local heartbeat timer).
 *
 * Invariant 3 (bounded): once Temporal is unreachable for good, a waiting send ends within about a heartbeat timeout
 * (+ 20 s) of the last heartbeat the server recorded or of its wait's start, whichever is later.
 *
 * Attack: Kafka is down (five other pages hold the erasures' barrier's five holder slots through their failed sends'
 * fences). A range chunk's attempt 1 (pageOptions) begins sending page P1 at 1 s: it waits for a barrier holder slot,
 * its keepAlive heartbeating and asking every 5 s, while the chunk's next page is read alongside it, heartbeating
 * every 2 s as archive-range's prefetched readArchived does (a selective filter: a 300 s read). At 20 s the worker is
 * cut off from the Temporal frontend for good (heartbeats and describes lost; sdk-core's local timers on, 5 s buffer).
 *
 * Observed: the server records attempt 1's last heartbeat at 19 s, times it out at 109.1 s and starts attempt 2;
 * attempt 1's send keeps waiting for a barrier holder slot until sdk-core's local timer cancels it ("TimedOut (local
 * heartbeat timer)") 95 s after the read's last heartbeat into the void: its wait ends at 396.1 s, 267 s past the
 * bound. Expected: by the last recorded heartbeat + the heartbeat timeout + 20 s (129 s). (Nothing of P1 is sent:
 * safety holds; the wait, its worker slot and its keepAlive's describes every 5 s go on for ~5 minutes.)
 *
 * Suspected cause: worker/attempt-lease.ts:232-238 (keepAlive) and shared/kafka.ts:980-990 (keepingAttemptAlive):
 * the give-up (unanswered for HOLD_UNANSWERED_MS and a heartbeat timeout past the last confirmed heartbeat) lives in
 * hold alone (worker/attempt-lease.ts:213-220); a send waiting before its hold (a barrier holder slot, a producer slot)
 * is bound only to the attempt's signal, which aborts only on the server's word (unreachable) or sdk-core's local
 * heartbeat timer, which the activity's own heartbeats into the void keep resetting. The lease's signal could abort
 * once the same give-up condition holds, whatever the send is waiting for.
 *
 * Fixed: a keepalive whose question goes unanswered checks the hold's rule too and ends the attempt on its side
 * (worker/attempt-lease.ts keepAlive): P1's wait ends at 106 s, attempt 1 failing just before the server's timeout
 * (the expected outcome admits either).
 */

const CUT_MS = 20_000;
const READ_MS = 300_000;
const BEAT_EVERY_MS = 2_000;

beforeEach(() => jest.useFakeTimers({ doNotFake: ['nextTick', 'queueMicrotask'] }));
afterEach(() => jest.useRealTimers());

it("a send waiting for a barrier slot ends with its attempt's cut-off, whatever else heartbeats", async () => {
  const { sendPage, holdBarrierSlots, holding } = await pageSendSetting({ from: 100, until: Infinity });
  void holdBarrierSlots();
  let p1Ended: number | undefined;
  let p1Error: string | undefined;
  const server = fakeActivityServer(
    pageOptions,
    async (ctx, attempt) => {
      if (attempt > 1) return; // the retry: whatever it does is not the point
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      // The chunk's next page, read alongside the send (archive-range's prefetch), heartbeating its reads.
      const reading = (async () => {
        for (let read = 0; read < READ_MS; read += BEAT_EVERY_MS) {
          await new Promise((resolve) => setTimeout(resolve, BEAT_EVERY_MS));
          if (ctx.cancellationSignal.aborted) return;
          ctx.heartbeat({ cursor: 0, reading: read });
        }
      })();
      try {
        await sendPage(ctx, 'P1');
      } catch (err) {
        p1Error = (err as Error).message;
        throw err;
      } finally {
        p1Ended = server.now();
      }
      await reading;
    },
    {
      localTimeoutBufferMs: 5_000,
      lostHeartbeat: (attempt, at) => attempt === 1 && at >= CUT_MS,
    },
  );
  await jest.advanceTimersByTimeAsync(600_000);

  const first = server.attempts[0];
  const lastRecorded = first.heartbeats.at(-1)!;
  const bound = lastRecorded + 90_000 + 20_000;
  expect({
    first: `${first.outcome} at ${first.endedAt! / 1000} s (last heartbeat recorded at ${lastRecorded / 1000} s)`,
    p1Wait:
      p1Ended !== undefined && p1Ended <= bound + 1_000 ? 'ended within the bound' : `ended at ${p1Ended! / 1000} s`,
    p1Sent: holding('P1').length,
    p1Error,
  }).toEqual({
    first: timedOutOrGaveUp(),
    p1Wait: 'ended within the bound',
    p1Sent: 0,
    p1Error: expect.any(String),
  });
});

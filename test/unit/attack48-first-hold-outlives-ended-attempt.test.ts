import { pageOptions } from '../../workflows/activity-options';
import { cutOffFirstAttempt, timedOutOrGaveUp } from '../support/fake-temporal-attempts';
import { pageSendSetting } from '../support/page-send-setting';

/**
 * attack48 against fdb90b1 (the attempt lease and its fixes in 406d44f).
 *
 * Invariant: bounded: a waiting send ends within about a heartbeat timeout once Temporal is unreachable; it does not
 * hold its producer slot and erasure-barrier holder slot, asking into the void, long after the server ended its
 * attempt (attack47-hold-outlives-ended-attempt's bound: by the last recorded heartbeat + heartbeat timeout + sdk-core's
 * 5 s local buffer).
 *
 * Attack: attack47's setting, but the cut comes before the attempt's first send. A range chunk's attempt 1 reads its
 * first page P1 for 40 s heartbeating every 2 s (as the archive pass's reads do); its worker is cut off from the
 * Temporal frontend from 10 s on, for good (Kafka reachable). The server last records a heartbeat at 8 s and times
 * attempt 1 out at 98.1 s; attempt 2 (a worker that reaches Temporal) sends P1 and completes at 99.3 s. Attempt 1's
 * send of P1 starts at 40 s: its first hold, with no heartbeat ever confirmed. sdk-core's local timers modelled (5 s
 * buffer; the reads' heartbeats and the hold's one heartbeat into the void reset it).
 *
 * Observed: attempt 1's send ends only at 130.13 s, "Attempt 1 has no heartbeat the Temporal server confirmed for its
 * heartbeat timeout (90000 ms: Temporal unreachable); its send gives up": 120 s after Temporal became unreachable, 32 s
 * after the server ended the attempt (98.1 s) and after attempt 2 had sent the same page (99.1-99.3 s), with 71
 * heartbeats and describes into the void after that end, its producer slot and barrier holder slot held meanwhile.
 * Expected: by 103 s (last recorded heartbeat 8 s + 90 s + 5 s): nothing of the attempt was ever confirmed and every
 * ask failed, so the server may have ended it long before. Nothing is sent late (the hold never returns): the cost is
 * boundedness, not integrity.
 *
 * Suspected cause: worker/attempt-lease.ts:205: with no confirmed heartbeat (`until === -Infinity`), the give-up counts
 * a heartbeat timeout from the hold's own start, not from anything the server may have timed (the attempt's start, or
 * its last heartbeat the server could have had): a send that comes late in a cut-off attempt waits a full heartbeat
 * timeout more. Counting from the attempt's start instead would trade this for the mirror failure
 * (attack48-blip-after-long-read-fails-attempt: with an old confirmation a hold waits none): the lease learns what the
 * server recorded only while a send asks, and the activity's own heartbeats between sends (delivered or failing) tell it
 * nothing.
 *
 * Fixed: with no heartbeat ever confirmed, a hold counts the heartbeat timeout from its attempt's start, not its own
 * (worker/attempt-lease.ts), once questions have gone unanswered for 20 s: the send ends at 90.1 s, attempt 1 failing
 * just before the server's timeout (the expected outcome now admits either).
 */

/** Attempt 1's worker is cut off from the Temporal frontend from here on (ms): for good. */
const CUT_FROM_MS = 10_000;
/** How long attempt 1 reads P1, heartbeating every 2 s. */
const READ_MS = 40_000;

beforeEach(() => jest.useFakeTimers({ doNotFake: ['nextTick', 'queueMicrotask'] }));
afterEach(() => jest.useRealTimers());

it('a first send of an attempt cut off from Temporal ends soon after the server can no longer keep it alive', async () => {
  const { sendPage, holding } = await pageSendSetting({ from: Infinity, until: Infinity });
  const verdict = await cutOffFirstAttempt(
    pageOptions,
    async (ctx, attempt) => {
      if (attempt === 1) {
        for (let read = 0; read < READ_MS; read += 2_000) {
          await new Promise((resolve) => setTimeout(resolve, 2_000));
          ctx.heartbeat({ cursor: 0, reading: read });
        }
      }
      await sendPage(ctx, 'P1');
    },
    { cutFromMs: CUT_FROM_MS, runForMs: 300_000 },
  );
  expect({ ...verdict, p1Committed: holding('P1').filter((t) => t.committed).length }).toEqual({
    // Timed out by the server, or failed on its side first (its send gave up): either way over, and its retry sends P1.
    first: timedOutOrGaveUp(),
    sendEnded: 'within the heartbeat timeout and its local buffer',
    p1Committed: 1,
  });
});

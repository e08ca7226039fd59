import { pageOptions } from '../../workflows/activity-options';
import { attemptLines, fakeActivityServer } from '../support/fake-temporal-attempts';
import { pagesAroundLongRead, pageSendSetting } from '../support/page-send-setting';

/**
 * attack48 against fdb90b1 (the attempt lease and its fixes in 406d44f).
 *
 * Invariant: liveness: with Kafka healthy, a short Temporal blip (< 20 s) does not fail an attempt whose heartbeats
 * the server has been recording all along.
 *
 * Attack: a range chunk's attempt 1 sends page P1 at 0.8 s (its hold asks once: lease until 85.8 s), then reads page
 * P2 for 100 s heartbeating every 2 s, as replayArchivePage's archive reads do (activities/archive-range.ts:
 * readArchived beats the last details on its reads; a selective filter reads long between pages): every heartbeat is
 * stamped and recorded by the server, so the attempt is alive and well; nothing asks the server meanwhile (no send is
 * under way, and a send's keepAlive runs only around a send). P2's send holds at about 101 s, just as the worker's link
 * to the Temporal frontend blips for 10 s (heartbeats and describes lost from 100.8 s to 110.8 s; the server recorded a
 * heartbeat within 2 s before the blip and never comes near timing the attempt out).
 *
 * Observed: the hold's first describe is unanswered and the hold gives up at its next turn: attempt 1 fails at
 * 101.01 s, 0.2 s into the 10 s blip, "Attempt 1 has no heartbeat the Temporal server confirmed for its heartbeat
 * timeout (90000 ms: Temporal unreachable); its send gives up"; attempt 2 (102.01-102.21 s) sends P2. Expected: the
 * hold waits out the 10 s blip, asks again, finds its next heartbeat recorded and sends P2 in
 * attempt 1, which completes.
 *
 * Suspected cause: worker/attempt-lease.ts:205-206: the hold's give-up counts from the last heartbeat *an ask
 * confirmed* (`until`, set only by asks, which run only inside a hold or a send's keepAlive), not from anything the
 * hold itself has waited: a send that comes more than a heartbeat timeout after the attempt's previous ask finds that
 * bound already passed, so its first unanswered ask (one failed describe) ends the attempt. The give-up bound has no
 * wait of its own for a blip to pass (e.g. at least some seconds of failed asks since the hold began).
 *
 * Fixed: a hold gives up only once questions have gone unanswered for 20 s as well (HOLD_UNANSWERED_MS,
 * worker/attempt-lease.ts): the 10 s blip is waited out and attempt 1 completes.
 */

/** How long P2's read takes, heartbeating (an archive read): more than a heartbeat timeout less the blip. */
const READ_MS = 100_000;
const BEAT_EVERY_MS = 2_000;
/** The blip: attempt 1 cut off from the Temporal frontend (heartbeats and describes lost) in [from, until) ms. */
const BLIP = { from: 100_800, until: 110_800 };

beforeEach(() => jest.useFakeTimers({ doNotFake: ['nextTick', 'queueMicrotask'] }));
afterEach(() => jest.useRealTimers());

it('a 10 s Temporal blip as a page holds after a long heartbeating read does not fail its attempt', async () => {
  const { sendPage, holding } = await pageSendSetting({ from: Infinity, until: Infinity });
  const server = fakeActivityServer(
    pageOptions,
    pagesAroundLongRead(sendPage, { readMs: READ_MS, beatEveryMs: BEAT_EVERY_MS }),
    { lostHeartbeat: (attempt, at) => attempt === 1 && at >= BLIP.from && at < BLIP.until },
  );
  await jest.advanceTimersByTimeAsync(200_000);
  await server.finished;

  const first = server.attempts[0];
  expect({
    attempts: attemptLines(server.attempts),
    // The server recorded attempt 1's heartbeats up to the blip: it never came near timing it out.
    lastRecordedBeforeBlip: first.heartbeats.filter((at) => at < BLIP.from).at(-1)! >= BLIP.from - BEAT_EVERY_MS,
    p2Committed: holding('P2').filter((t) => t.committed).length,
  }).toEqual({
    attempts: [expect.stringMatching(/^1 \(0-[\d.]+ s\): completed$/)],
    lastRecordedBeforeBlip: true,
    p2Committed: 1,
  });
});

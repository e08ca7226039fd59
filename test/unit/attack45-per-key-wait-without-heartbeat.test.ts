import { pageOptions } from '../../workflows/activity-options';
import { fakeActivityServer, lateSends } from '../support/fake-temporal-attempts';
import { durationMs } from '../support/fake-transactional-kafka';
import { pageSendSetting } from '../support/page-send-setting';

/**
 * attack45 against 3d039ea (replay sends settle within their attempt; page sends heartbeat while waited for).
 *
 * Invariant: (1) a page is committed to the topic twice only when a commit got no answer for its whole commit phase,
 * never because an attempt ended (timed out) and its retry sent the page again; (3) the onWait heartbeat keeps
 * heartbeat-timeout activities (pageOptions: heartbeat timeout 30 s) alive while they wait on a long commit, and
 * (2) per_key waves that wait for a previous attempt's send.
 *
 * Attack: a per_key range replay page (replayRangePage → publishChunkPage → publishPage, pageOptions: start-to-close
 * 10 min, heartbeat timeout 30 s) whose send fails as Kafka goes away; its slot is fenced again and again until Kafka
 * is back (shared/kafka.ts fence). The attempt heartbeats meanwhile (onWait, every 5 s) until its start-to-close
 * timeout (10 min): the server times it out, its next heartbeat's answer cancels it, publishMessages returns and the
 * send (its fence) goes on in the background, tracked in ordered-publish's `running`. The retry, on the same worker,
 * waits for that send before its first wave (`await running.get(sender)`), and that wait heartbeats nothing: the
 * server times the retry out 30 s later (heartbeat timeout) and starts another, which waits too, and so on. The worker
 * never hears of those timeouts (an attempt learns it was timed out only from a heartbeat's answer), so when Kafka is
 * back and the first send's fence ends, every waiting attempt, timed out or not, sends the page: each commits it.
 * Fakes: Kafka unreachable from 0.1 s to 11 min 40 s (700 s); test/support/fake-temporal-attempts.ts plays the server
 * (heartbeat and start-to-close timeouts, retry intervals of pageOptions) and the SDK (a timed-out attempt is
 * cancelled at its next heartbeat).
 *
 * Observed: the page committed by 4 transactions at 705.9 s: attempts 2, 3 and 4 (timed out by the server at
 * 631.2 s, 663.3 s and 697.4 s, no heartbeat since their start) each sent it at 705.7 s, and attempt 5 sent it too.
 * Expected: committed once (with the running wait heartbeating (onWait) and checking the signal after it, as a fix
 * would, the test passes: checked).
 *
 * Suspected cause: activities/ordered-publish.ts:55 `await running.get(sender)` waits for the previous attempt's
 * send (up to its commit phase, COMMIT_PHASE_MS 65 s, or its fence, unbounded while Kafka is away) without calling
 * onWait/onWave and without the signal, and activities/publish.ts:66 heartbeats only once the send itself is under
 * way; worker/send-attempt.ts's settleBy covers start-to-close only, not the heartbeat timeout, which for pageOptions
 * (30 s) ends an attempt far sooner. Same cause, another wait: the barrier's holder slot (shared/barrier.ts:44
 * holderSlot), attack45-barrier-slot-wait-without-heartbeat.test.ts.
 *
 * Fixed: a page's send under the erasures' barrier keeps its attempt alive (shared/kafka.ts keepingAttemptAlive, in
 * repository/erasure.ts withErasuresChecked; the replay worker's send-attempt interceptor gives an activity with a
 * heartbeat timeout a keepAlive that heartbeats its last details again every 5 s): the server ends a live attempt
 * waiting there only at its start-to-close timeout, which its sends settle before. The fake server runs the worker's
 * whole interceptor list. Fails with keepingAttemptAlive made a pass-through. The per_key wait for the previous attempt's
 * send also ends when the attempt does (activities/ordered-publish.ts); the page is sent under the barrier, as
 * replayRangePage sends it (written without it).
 */

const DOWN_FROM_MS = 100;
const UP_AT_MS = 700_000;

beforeEach(() => jest.useFakeTimers({ doNotFake: ['nextTick', 'queueMicrotask'] }));
afterEach(() => jest.useRealTimers());

it('a per_key retry waiting for its previous attempt send is not timed out by its heartbeat and then sends anyway', async () => {
  const { now, holding, sendPage } = await pageSendSetting({ from: DOWN_FROM_MS, until: UP_AT_MS });

  // One page of the chunk, one event: a single wave. Which attempt began a send of the page, and when (ms).
  const sends: { attempt: number; at: number }[] = [];
  const server = fakeActivityServer(pageOptions, (ctx, attempt) =>
    sendPage(ctx, 'page-1', 'per_key', () => sends.push({ attempt, at: now() })),
  );
  await jest.advanceTimersByTimeAsync(UP_AT_MS + 5 * durationMs(pageOptions.startToCloseTimeout));
  await server.finished;

  const committed = holding('page-1').filter((t) => t.committed);
  // Attempts that began a send of the page after the server had timed them out (its retry already started).
  const late = lateSends(server.attempts, sends);
  expect({
    committed: committed.map((t) => `committed at ${(t.at ?? NaN) / 1000} s`).length,
    late,
  }).toEqual({ committed: 1, late: [] });
});

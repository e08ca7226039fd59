import { pageOptions } from '../../workflows/activity-options';
import { fakeActivityServer, lateSends } from '../support/fake-temporal-attempts';
import { pageSendSetting } from '../support/page-send-setting';

/**
 * attack45 against 3d039ea (replay sends settle within their attempt; page sends heartbeat while waited for).
 *
 * Invariant: (1) a page is committed to the topic twice only when a commit got no answer for its whole commit phase,
 * never because an attempt ended (timed out) and its retry sent the page again; (3) the onWait heartbeat keeps
 * heartbeat-timeout activities (pageOptions: heartbeat timeout 30 s) alive while they wait on long commits.
 *
 * Attack: range replay pages (replayRangePage / replayArchivePage, pageOptions) send under the erasures' barrier
 * (repository/erasure.ts withErasuresChecked → shared/barrier.ts holdBarrier), which first takes one of the pool's
 * holder slots (half of DATABASE_POOL_SIZE 10: 5) and keeps it until the page's send has ended, its fence included.
 * A worker runs 20 activities at once, so a sixth concurrent page (six replays, or the shards of one) waits for a slot.
 * When Kafka goes away the five holders' sends fail and are fenced again and again until it is back (the holders
 * heartbeat meanwhile, onWait); the sixth page's attempt waits in holderSlot, heartbeating nothing: the server times
 * it out after 30 s (heartbeat timeout) and starts its retry, which waits behind it, and so on. The worker never hears
 * of those timeouts (an attempt learns it was timed out only from a heartbeat's answer). When Kafka is back the fences
 * end, the slots free, and every waiting attempt of the page, timed out or not, sends it: each commits it.
 * Fakes: Kafka unreachable from 0.1 s to 90 s; a pg pool of 10 that answers every barrier statement at once;
 * test/support/fake-temporal-attempts.ts plays the server (heartbeat and start-to-close timeouts, pageOptions' retry
 * intervals) and the SDK (a timed-out attempt is cancelled at its next heartbeat).
 *
 * Observed: page P committed by 4 transactions: attempts 1, 2 and 3 (timed out by the server at 30.1 s, 61.2 s and
 * 93.3 s of P's first attempt, none having heartbeated) each sent it at 94.7 s, and attempt 4 sent it too.
 * Expected: committed once (with the attempt heartbeating while it waits, as a fix would, the test passes: checked).
 *
 * Suspected cause: shared/barrier.ts:44 `await holderSlot(pool)` (and pool.connect, the INSERT) before the page's send
 * is an unbounded wait with no heartbeat and no signal, and activities/publish.ts:66 heartbeats only once the send
 * is under way; worker/send-attempt.ts's settleBy covers the start-to-close timeout (10 min), not the 30 s heartbeat
 * timeout that ends a page attempt first. Same cause, another wait: attack45-per-key-wait-without-heartbeat.test.ts.
 *
 * Fixed: a page's send under the erasures' barrier keeps its attempt alive (shared/kafka.ts keepingAttemptAlive, in
 * repository/erasure.ts withErasuresChecked; the replay worker's send-attempt interceptor gives an activity with a
 * heartbeat timeout a keepAlive that heartbeats its last details again every 5 s): the server ends a live attempt
 * waiting there only at its start-to-close timeout, which its sends settle before. The fake server runs the worker's
 * whole interceptor list. Fails with keepingAttemptAlive made a pass-through.
 */

const DOWN_FROM_MS = 100;
const UP_AT_MS = 90_000;

beforeEach(() => jest.useFakeTimers({ doNotFake: ['nextTick', 'queueMicrotask'] }));
afterEach(() => jest.useRealTimers());

it('a page waiting for a barrier holder slot is not timed out by its heartbeat and then sent anyway', async () => {
  const { now, holding, holdBarrierSlots, sendPage } = await pageSendSetting({ from: DOWN_FROM_MS, until: UP_AT_MS });
  const others = holdBarrierSlots();
  await jest.advanceTimersByTimeAsync(1_000);

  // Page P of a range replay chunk.
  const sends: { attempt: number; at: number }[] = [];
  const origin = now();
  const server = fakeActivityServer(pageOptions, (ctx, attempt) =>
    sendPage(ctx, 'P', undefined, () => sends.push({ attempt, at: now() - origin })),
  );
  await jest.advanceTimersByTimeAsync(UP_AT_MS + 60_000);
  await server.finished;
  await Promise.all(others);

  const committed = holding('P').filter((t) => t.committed);
  // Attempts that began a send of P after the server had timed them out (its retry already started).
  const late = lateSends(server.attempts, sends);
  expect({ committed: committed.length, late }).toEqual({ committed: 1, late: [] });
});

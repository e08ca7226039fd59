import { pageOptions } from '../../workflows/activity-options';
import { fakeActivityServer } from '../support/fake-temporal-attempts';
import { pageSendSetting } from '../support/page-send-setting';

/**
 * attack47 against 0bf5fe9 ("a page is sent only within its attempt's lease").
 *
 * Invariant: with Temporal and Kafka healthy a page is sent without waiting and without failing: the lease never
 * fails, fences or delays a page whose attempt the server keeps alive.
 *
 * Attack: a range chunk of 60 one-event pages, each read in 0.8 s and sent (produce 0.2 s), heartbeating its cursor
 * after each page; Temporal and Kafka healthy all along, every heartbeat recorded at once. The lease is asked only
 * when a hold finds less than a commit phase (65 s) left; the first page's hold sets it to the first beat's making +
 * 85 s, and no later page asks while 65 s or more are left. The page that finds between 65 s and 65 s + (its guard and
 * produce time) left passes the hold without asking and is then refused by refuseLateCommit, which wants 65 s *after*
 * the guard, and again after the acks. With one-second pages that is the 21st page of every attempt (65.0 s left at
 * its hold); in general a page whose hold lands in that window (about produce time / page period of the 20 s cycles).
 *
 * Observed: attempt 1 (0-21 s) fails "The replay send is aborted: 64800 ms left of its attempt, under the 65000 ms a
 * commit is given", its transaction of P20 produced and aborted (fenced); attempt 2 (22-43 s) the same with P40;
 * attempt 3 (45-65 s) completes. Expected: attempt 1 completes, no transaction aborted. Each failure also grows the
 * retry backoff (1 s, 2 s, … up to 10 min) of a chunk that is merely long.
 *
 * Suspected cause: shared/kafka.ts:466-479: `lease.hold(COMMIT_PHASE_MS)` returns with exactly COMMIT_PHASE_MS left
 * (worker/attempt-lease.ts:146, `until - now >= ms` without asking), and the checks after it
 * (refuseLateCommit(settleBy(), 'produces nothing' / 'is aborted')) want the same COMMIT_PHASE_MS after the guard and
 * the produce; the lease is renewed only once it is already under the threshold, never ahead of it.
 *
 * Fixed: a send holds a commit phase plus a produce's acknowledgement timeout of lease (SEND_LEASE_MS, 75 s,
 * shared/kafka.ts) before it produces, so the checks after the guard and the acks find a commit phase left.
 */

beforeEach(() => jest.useFakeTimers({ doNotFake: ['nextTick', 'queueMicrotask'] }));
afterEach(() => jest.useRealTimers());

const PAGES = 60;
/** How long each page's read takes before its send (the send's produce takes 0.2 s: one page a second). */
const READ_MS = 800;

it('a chunk of one-second pages with Temporal and Kafka healthy is sent in one attempt, nothing aborted', async () => {
  const { transactions, holding, sendPage } = await pageSendSetting({ from: Infinity, until: Infinity });
  const server = fakeActivityServer(pageOptions, async (ctx) => {
    const from = (ctx.info.heartbeatDetails as { cursor?: number } | undefined)?.cursor ?? 0;
    for (let i = from; i < PAGES; i++) {
      await new Promise((resolve) => setTimeout(resolve, READ_MS));
      await sendPage(ctx, `P${i}`);
      ctx.heartbeat({ cursor: i + 1 });
    }
  });
  await jest.advanceTimersByTimeAsync(PAGES * 1_200 + 60_000);

  const copies = Array.from({ length: PAGES }, (_, i) => holding(`P${i}`).filter((t) => t.committed).length);
  expect({
    attempts: server.attempts.map((a) => `${a.attempt} (${a.startedAt / 1000}-${a.endedAt! / 1000} s): ${a.outcome}`),
    aborted: transactions.filter((t) => !t.committed && t.values.length > 0).map((t) => t.values.join()),
    committedOnce: copies.every((c) => c === 1),
  }).toEqual({ attempts: [expect.stringMatching(/^1 \(0-[\d.]+ s\): completed$/)], aborted: [], committedOnce: true });
});

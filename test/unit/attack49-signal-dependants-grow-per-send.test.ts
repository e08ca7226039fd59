import { pageOptions } from '../../workflows/activity-options';
import { fakeActivityServer } from '../support/fake-temporal-attempts';
import { pageSendSetting } from '../support/page-send-setting';

/**
 * attack49 against 0fc92e6 (withSendAttempt merging nested signals with AbortSignal.any; AttemptLease.hold's stop).
 *
 * Invariant 3 (bounded): no unbounded growth of AbortSignal.any dependents over a long chunk (thousands of sends in
 * one attempt).
 *
 * Attack: one healthy range chunk attempt (pageOptions, Kafka and Temporal healthy) sends 2,000 one-event pages in a
 * row as replayRangePage does (pageSendSetting's sendPage: publishChunkPage → publishMessages with the attempt's
 * cancellationSignal, under the erasures' barrier), heartbeating its progress after each. After 500 and after 2,000
 * pages the test counts the dependents registered on the attempt's cancellationSignal (Node's internal
 * kDependantSignals set: every AbortSignal.any over it adds one, Node 20 never removes them until the source aborts,
 * even once the dependent signal is garbage collected).
 *
 * Observed (Node v20.20.2): 1,000 dependents after 500 pages, 4,000 after 2,000: two per send, for the attempt's whole
 * life (a chunk of a million events: two million WeakRefs on one signal, walked in full when it aborts). Expected: a
 * count that does not grow with the number of sends (a few per send under way).
 *
 * Suspected cause: shared/kafka.ts:964 (withSendAttempt: a fresh AbortSignal.any([lease signal, publishMessages'
 * signal]) on every publishMessages call, new in 0fc92e6) and worker/attempt-lease.ts:201 (hold: a fresh
 * AbortSignal.any([signal, holdSignal]) on every hold). Both flatten to the attempt's cancellationSignal (and the
 * lease's `ended` signal), whose dependants set on Node 20 (no FinalizationRegistry clean-up before Node 22) only
 * grows. Merging once per attempt (or with a listener removed when the send ends) would keep it bounded.
 *
 * Fixed: the send's and the hold's merged signals are made once per pair of signals (shared/timeout.ts eitherSignal),
 * so an attempt's signal lists a fixed few dependents however many pages it sends.
 */

const PAGES = 2_000;
const FIRST_LOOK = 500;

function dependants(signal: AbortSignal): number {
  const key = Object.getOwnPropertySymbols(signal).find((s) => s.description === 'kDependantSignals');
  return key ? ((signal as unknown as Record<symbol, Set<unknown>>)[key]?.size ?? 0) : 0;
}

beforeEach(() => jest.useFakeTimers({ doNotFake: ['nextTick', 'queueMicrotask'] }));
afterEach(() => jest.useRealTimers());

it('a long chunk of sends leaves its attempt signal with a bounded number of dependents', async () => {
  const { sendPage, holding } = await pageSendSetting({ from: Infinity, until: Infinity });
  const seen: Record<string, number> = {};
  const server = fakeActivityServer(pageOptions, async (ctx) => {
    for (let page = 1; page <= PAGES; page += 1) {
      await sendPage(ctx, `P${page}`);
      if (page === FIRST_LOOK || page === PAGES) seen[`after ${page} pages`] = dependants(ctx.cancellationSignal);
    }
  });
  await jest.advanceTimersByTimeAsync(600_000);
  await server.finished;

  expect({
    attempts: server.attempts.map((a) => `${a.attempt}: ${a.outcome}`),
    lastCommitted: holding(`P${PAGES}`).filter((t) => t.committed).length,
    // Bounded: what 2,000 sends leave is no more than what 500 left (give or take a send under way).
    growth: seen[`after ${PAGES} pages`] - seen[`after ${FIRST_LOOK} pages`] <= 4 ? 'bounded' : seen,
  }).toEqual({ attempts: ['1: completed'], lastCommitted: 1, growth: 'bounded' });
});

import { publishMessages } from '../../activities/publish';
import { REPLAY_PRODUCER_SLOTS, createProducer } from '../../shared/kafka';
import { publishOptions } from '../../workflows/activity-options';
import { durationMs, fakeTransactionalKafka, unreachableWhile } from '../support/fake-transactional-kafka';

/**
 * attack43 — Invariant 1 (nothing doubled) and Invariant 2 (bounded: waits and memory per producer).
 *
 * Attack: createProducer's sending() waits for a free slot (take(): an unbounded `waiting` queue, no signal, no
 * bound) before anything else. A slot is held for as long as its send runs, and a failed send holds it through its
 * fence, which is tried again forever while Kafka is unreachable (fence(): "until it succeeds"). So during an outage
 * the 8 slots are held by failed sends, and every later send queues. Its activity attempt times out
 * (publishMessages returns on the cancellation signal, "the send runs to its end in the background"), Temporal retries
 * the activity, and the retry's send queues too (holding its page's messages: memory grows with every attempt). When
 * Kafka comes back the fences succeed, the slots free, and every queued send is started: the erasure barrier's guard
 * lets it through (its page still holds the barrier, which `keep` holds until the send ends; repository/erasure.ts
 * withErasuresChecked, shared/barrier.ts holdBarrier) and it commits. The page is published once per attempt that
 * queued; a send whose attempt had long ended is started, not merely finished, in the background.
 *
 * Reproduction (fakes: Kafka unreachable from 0.1 s to 40 s (the start-to-close timeout + 10 s); 20 concurrent activities per worker,
 * worker/worker.ts maxConcurrentActivityTaskExecutions, so more than 8 sends at once is ordinary):
 *   t=0      8 other pages' sends take the 8 slots; their produce fails (connection error) at 0.2 s, each slot is
 *            fenced, and the fence's connect fails, again and again (0.5 s doubling to 10 s);
 *   t=1      page P, attempt 1: its send queues for a slot;
 *   t=31     attempt 1 times out (start-to-close 30 s): publishMessages rejects, the send stays queued;
 *   t=32     attempt 2 (retry after 1 s): its send of P queues too;
 *   t=40     Kafka back; at the fences' next tries (~45.7 s) they succeed, the 8 failed sends reject, the slots free,
 *            and both queued sends of P run, both committed at ~45.9 s.
 * With a real stack: stop the broker (docker stop) with 9 replay pages in flight on one worker, start it again after
 * 45 s; read the topic read-committed: the 9th page is there twice (once per attempt that queued).
 *
 * Observed: P is in two committed transactions (attempt 1's send started at ~45.7 s, 14.7 s after its attempt ended).
 * Expected: once — a send whose attempt ended before it began must not begin (or the retry must wait for it).
 *
 * Suspected cause: shared/kafka.ts sending() (~line 411: `const slot = await take()`, no signal, no bound, the
 * `waiting` queue ~line 370) together with fence()'s unbounded loop (~line 381) holding the slots; activities/publish.ts
 * gives the send no signal (kafkajs's API has none), so a queued send cannot learn its attempt is gone.
 *
 * Fixed: publishMessages binds its send to the attempt's signal (withSendSignal); a send waiting for a slot leaves the
 * queue when the attempt ends, and one whose attempt ended before it produced anything produces nothing.
 */

const DOWN_FROM_MS = 100;
/** Kafka is back 10 s after the attempt's start-to-close timeout (40 s when that was 30 s). */
const upAtMs = () => durationMs(publishOptions.startToCloseTimeout) + 10_000;
const TOPIC = 't';

function fakeKafka(started: number) {
  const now = () => Date.now() - started;
  const down = () => now() >= DOWN_FROM_MS && now() < upAtMs();
  return fakeTransactionalKafka({
    topic: TOPIC,
    now,
    produceMs: 200,
    reachable: unreachableWhile(down),
  });
}

const page = (value: string) => [{ topic: TOPIC, key: Buffer.from(value), value: Buffer.from(value), headers: {} }];

beforeEach(() => jest.useFakeTimers({ doNotFake: ['nextTick', 'queueMicrotask'] }));
afterEach(() => jest.useRealTimers());

it('does not start a queued send of a page after its attempt ended and its retry sent the page', async () => {
  const startToClose = durationMs(publishOptions.startToCloseTimeout);
  const retryAfter = durationMs(publishOptions.retry!.initialInterval);
  const started = Date.now();
  const { kafka, transactions } = fakeKafka(started);
  const producer = createProducer(kafka);
  await producer.connect();

  // Eight other pages in flight when Kafka goes away: they hold the slots through their fences.
  const others = Array.from({ length: REPLAY_PRODUCER_SLOTS }, (_, i) =>
    publishMessages(producer, page(`other-${i}`) as never).catch(() => undefined),
  );
  await jest.advanceTimersByTimeAsync(1_000);

  // Page P, attempt 1, timed out by its start-to-close timeout while its send waits for a slot.
  const attempt1 = new AbortController();
  setTimeout(() => attempt1.abort(new Error('activity start-to-close timeout')), startToClose);
  const first = publishMessages(producer, page('P') as never, { signal: attempt1.signal }).then(
    () => 'resolved',
    (err: Error) => err.message,
  );
  await jest.advanceTimersByTimeAsync(startToClose);
  expect(await first).toBe('activity start-to-close timeout');

  // Temporal retries the activity.
  await jest.advanceTimersByTimeAsync(retryAfter);
  const attempt2 = new AbortController();
  setTimeout(() => attempt2.abort(new Error('activity start-to-close timeout')), startToClose);
  const second = publishMessages(producer, page('P') as never, { signal: attempt2.signal }).then(
    () => 'resolved',
    (err: Error) => err.message,
  );
  await jest.advanceTimersByTimeAsync(120_000);
  await Promise.all(others);
  expect(await second).toBe('resolved');

  const committed = transactions.filter((t) => t.committed && t.values.includes('P'));
  // Which transactions hold P committed, and when (s from the start): expected one (attempt 2's).
  expect(committed.map((t) => `slot ${t.slot} committed at ${(t.at ?? NaN) / 1000} s`)).toHaveLength(1);
});

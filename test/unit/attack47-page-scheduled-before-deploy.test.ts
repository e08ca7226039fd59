import { pageOptions } from '../../workflows/activity-options';
import { fakeActivityServer } from '../support/fake-temporal-attempts';
import { pageSendSetting } from '../support/page-send-setting';

/**
 * attack47 against 0bf5fe9 ("a page is sent only within its attempt's lease").
 *
 * Invariant: with Temporal and Kafka healthy a page is sent: a range replay running when the worker is upgraded to
 * 0bf5fe9 goes on (the workflows keep their in-flight runs working across deploys, workflows/range-replay.ts patched()).
 *
 * Attack: a range chunk activity scheduled by a worker before 0bf5fe9, with pageOptions' heartbeat timeout of then
 * (30 s): the server keeps the options of its ScheduleActivityTask for every attempt and retry, so its attempts run on
 * the upgraded worker with heartbeatTimeoutMs 30 000. Temporal and Kafka healthy; the chunk sends one page.
 *
 * Observed: every attempt fails "A heartbeat timeout of 30000 ms can never hold a lease of 65000 ms (its activity
 * options are wrong)" (4 of 4 here; pageOptions has no maximumAttempts, so the chunk retries forever with backoff up to
 * 10 min and the replay never finishes); P never produced. Expected: attempt 1 sends P and completes.
 *
 * Suspected cause: worker/attempt-lease.ts:138-142 (hold) throws for any heartbeat timeout under 71 s, and
 * worker/send-attempt.ts:211-224 installs the lease on every activity with a heartbeat timeout, whatever options its
 * attempt was scheduled with; the heartbeat timeout grew in workflows/activity-options.ts only for activities
 * scheduled from now on.
 *
 * Fixed: the lease is given only to an attempt whose heartbeat timeout can hold SEND_LEASE_MS
 * (worker/send-attempt.ts); one scheduled with a shorter one sends as before the lease, on its start-to-close bound.
 */

beforeEach(() => jest.useFakeTimers({ doNotFake: ['nextTick', 'queueMicrotask'] }));
afterEach(() => jest.useRealTimers());

it('a page activity scheduled before the upgrade (heartbeat timeout 30 s) still sends its page', async () => {
  const { holding, sendPage } = await pageSendSetting({ from: Infinity, until: Infinity });
  const scheduledBefore = { ...pageOptions, heartbeatTimeout: '30s' };
  const server = fakeActivityServer(scheduledBefore, (ctx) => sendPage(ctx, 'P'), { maxAttempts: 4 });
  await jest.advanceTimersByTimeAsync(60_000);
  await server.finished;

  expect({
    attempts: server.attempts.map((a) => `${a.attempt}: ${a.outcome}`),
    committed: holding('P').filter((t) => t.committed).length,
  }).toEqual({ attempts: ['1: completed'], committed: 1 });
});

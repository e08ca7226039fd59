import type { Pool } from 'pg';
import { awaitBarrierHolders } from '../../shared/barrier';

/**
 * attack45 against abac58a (barrier: a waiter's look refused by its lock_timeout, 55P03, is tried again until the
 * wait's timeout instead of rejecting the wait).
 *
 * Invariant (5): a table lock on barrier_holders (a migration's, attack37's SHARE ROW EXCLUSIVE) held for less than
 * the wait's timeout does not end the wait early: the waiter waits the lock out and returns once the holders are gone.
 *
 * Attack: the same lock, taken before the waiter is called rather than 300 ms after (the attack37 test's order). The
 * waiter's first statement is not a look but its clean-up DELETE of rows an hour old, which has no lock_timeout: it
 * waits on the lock, and the silence bound (BARRIER_SILENCE_MS, 5 s) takes it for a silent Postgres and rejects the
 * whole wait: the stop-29 failure abac58a fixed for looks. (fenceGone's UPDATE and DELETE have no lock_timeout either.)
 * Fakes: a pg pool over one barrier_holders table with a lock held from before the call until 7 s: LOCK TABLE with a
 * lock_timeout is refused with 55P03 after it, DELETE and UPDATE wait for the lock; one holder row, live until 10 s.
 *
 * Observed: the wait rejected at 5 s, "The barrier b: Postgres did not answer in 5000 ms". Expected: it returns once
 * the holder is gone (10 s), as it does when the lock is taken 0.3 s after the call (the control below: returned).
 *
 * Suspected cause: shared/barrier.ts:305-309 the clean-up DELETE (and fenceGone's UPDATE and DELETE, lines 279-283 and
 * 295-299) runs under the silence bound without a lock_timeout, outside the retry abac58a gives the look (252-270).
 *
 * Fixed: every statement of the waiter on barrier_holders (look, clean-up, claim, delete) waits at most
 * BARRIER_LOOK_LOCK_MS for its lock and, refused (55P03), is skipped and tried again at the next look. The fake
 * applies lock_timeout to DELETE and UPDATE as Postgres does (it applied it to LOCK TABLE only when written).
 */

const LOCK_UNTIL_MS = 7_000;
const HOLDER_ENDS_MS = 10_000;

function lockedTablePool(started: number, lockFromMs: number): Pool {
  const now = () => Date.now() - started;
  const locked = () => now() >= lockFromMs && now() < LOCK_UNTIL_MS;
  const unlocked = () => new Promise((resolve) => setTimeout(resolve, Math.max(0, LOCK_UNTIL_MS - now())));
  const connect = async () => {
    let lockTimeout = 0;
    const client = {
      on: () => client,
      off: () => client,
      release: () => undefined,
      query: async (sql: string) => {
        const text = sql.trim();
        const setting = /SET LOCAL lock_timeout = (\d+)/.exec(text);
        if (setting) lockTimeout = Number(setting[1]);
        // Any statement needing the table's lock waits for it, up to the transaction's lock_timeout (as Postgres).
        if (/^(LOCK TABLE|DELETE|UPDATE)/.test(text) && locked()) {
          if (lockTimeout > 0 && LOCK_UNTIL_MS - now() > lockTimeout) {
            await new Promise((resolve) => setTimeout(resolve, lockTimeout));
            throw Object.assign(new Error('canceling statement due to lock timeout'), { code: '55P03' });
          }
          await unlocked();
        }
        if (text === 'COMMIT' || text === 'ROLLBACK') lockTimeout = 0; // SET LOCAL ends with its transaction
        if (text.startsWith('SELECT id, fence')) {
          const rows = now() < HOLDER_ENDS_MS ? [{ id: 'h1', fence: null, live: true }] : [];
          return { rows, rowCount: rows.length };
        }
        return { rows: [], rowCount: 0 };
      },
    };
    return client;
  };
  return { options: { max: 10 }, connect } as unknown as Pool;
}

beforeEach(() => jest.useFakeTimers({ doNotFake: ['nextTick', 'queueMicrotask'] }));
afterEach(() => jest.useRealTimers());

async function wait(lockFromMs: number): Promise<string> {
  const started = Date.now();
  const outcome = awaitBarrierHolders(lockedTablePool(started, lockFromMs), 'b', { timeoutMs: 30_000 }).then(
    () => `returned at ${(Date.now() - started) / 1000} s`,
    (err: Error) => `rejected at ${(Date.now() - started) / 1000} s: ${err.message}`,
  );
  await jest.advanceTimersByTimeAsync(40_000);
  return outcome;
}

it('a barrier wait called while barrier_holders is locked waits the lock out', async () => {
  // Control: the lock taken 300 ms after the call (attack37's order): the looks are refused, tried again, and the wait
  // returns once the holder is gone.
  const after = await wait(300);
  const before = await wait(0);
  expect({ after, before }).toEqual({
    after: expect.stringMatching(/^returned/),
    before: expect.stringMatching(/^returned/),
  });
});

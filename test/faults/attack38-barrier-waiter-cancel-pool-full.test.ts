import { awaitBarrierHolders, BARRIER_LEASE_MS } from '../../shared/barrier';
import { barrierWorld } from '../support/barrier-world';

/**
 * attack38 against 922b557 (shared/barrier.ts awaitBarrierHolders / onBoundedClient), used by repository/erasure.ts
 * awaitReplaySends (activities/erasure.ts passes the activity's cancellationSignal and heartbeat).
 *
 * Invariant (barrier invariant 2; attack37-barrier-waiter-ignores-signal): a cancelled wait ends at once (within about
 * a second, BARRIER_POLL_MAX_MS), with the signal's reason.
 *
 * Attack: the process's pool is busy: a replay page holds the barrier (its send goes on; holders take at most half of
 * the pool, here its one of two connections) and the rest of the pool is in use by other work (another activity's
 * statement, an audit: here one connection checked out). The erasure's wait (awaitReplaySends) asks the pool for a
 * connection for each look; it is cancelled 300 ms in. onBoundedClient looks at the signal before pool.connect() and
 * races only fn with it: the wait for a pool connection is not raced with the signal.
 *
 * Observed: the wait cancelled 300 ms in ends ~4700 ms after the abort, rejected with pg-pool's "timeout exceeded when
 * trying to connect" (connectionTimeoutMillis 5000, shared/db.ts), not the abort; with no connection timeout it would
 * wait for as long as the pool stays busy.
 *
 * Fixed: onBoundedClient races the wait for a pool connection with the signal too (a connection given after the
 * abort goes straight back to the pool).
 */
jest.setTimeout(60_000);

const world = barrierWorld('a38_waiter_pool_full');

it('a barrier wait cancelled while the pool is busy ends within about a second with the abort', async () => {
  const name = 'a38-pool-full';
  const pool = world.replayPool(2);
  const page = await world.sendingPage(pool, name, BARRIER_LEASE_MS);
  // The rest of the pool in use by other work.
  const other = await pool.connect();

  const controller = new AbortController();
  const started = Date.now();
  const waited = awaitBarrierHolders(pool, name, { timeoutMs: 60_000, signal: controller.signal }).then(
    () => 'returned',
    (err: Error) => (err === controller.signal.reason ? 'aborted' : `rejected: ${err.message}`),
  );
  await new Promise((resolve) => setTimeout(resolve, 300));
  controller.abort();
  const verdict = await waited;
  const msAfterAbort = Date.now() - started - 300;
  other.release();
  page.end();
  await page.held;
  console.log(JSON.stringify({ msAfterAbort, verdict }));
  // A fix may reject with the abort's reason or wrap it: not with the pool's connect timeout, and not by returning.
  expect({ endedWithinASecond: msAfterAbort <= 1500, verdict }).toEqual({
    endedWithinASecond: true,
    verdict: expect.not.stringMatching(/^returned$|timeout exceeded when trying to connect/),
  });
});

import { awaitBarrierHolders, holdBarrier } from '../../shared/barrier';
import { createPool, type Pool } from '../../shared/db';
import { createLogger } from '../../shared/logger';
import { createTestDatabase } from '../support/database';
import { baseConfig } from '../support/env';
import { freezableProxy, type FreezableProxy } from '../support/freezable-proxy';

/**
 * attack33 (5811654: "the erasure's wait tries for 30 s at a time ... and heartbeats every second").
 *
 * Invariant: an erasure is never stuck forever (its wait gives up after its bound, REPLAY_SEND_WAIT_MS; an activity
 * that makes no progress stops heartbeating, so Temporal's heartbeat timeout retries it).
 *
 * Attack: a replay holds the barrier; the erasure's wait is in Postgres (pg_advisory_xact_lock under lock_timeout);
 * then its connection goes silent (a network partition, a frozen proxy: nothing passes, nothing closes). The
 * lock_timeout and statement_timeout are the server's: their errors never arrive, so the try never returns and the
 * bound is never checked. Since 5811654 onWait (the activity's heartbeat) runs on a timer of its own, every second,
 * whatever the wait is doing: the hung activity keeps telling Temporal it is alive, the heartbeat timeout never fires,
 * and the erasure waits for ever. (Before, onWait ran once per returned try: a hung try stopped the heartbeats.)
 * Observed: "still waiting, still heartbeating (5 beats in 5 s)" 12 s past the bound.
 * Fixed: each try has a bound of its own on this side (its lock_timeout + 5 s, shared/db.ts barrierTry): a try with no
 * answer fails and destroys its connection, and the server ends the try's session should it take the lock later
 * (idle_in_transaction_session_timeout).
 */
jest.setTimeout(60_000);

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let pool: Pool;
let proxied: Pool;
let proxy: FreezableProxy;

beforeAll(async () => {
  db = await createTestDatabase(baseConfig().databaseUrl, 'a33_barrier_hung');
  pool = createPool(db.databaseUrl, 2, createLogger('silent'));
  const url = new URL(db.databaseUrl);
  proxy = await freezableProxy(url.hostname, Number(url.port));
  url.port = String(proxy.port);
  proxied = createPool(url.toString(), 2, createLogger('silent'));
});

afterAll(async () => {
  proxy?.thaw();
  await proxied?.end().catch(() => undefined);
  await proxy?.close();
  await pool?.end();
  await db?.drop();
});

it('a barrier wait whose connection went silent gives up (no answer 5 s past its lock_timeout) and stops heartbeating', async () => {
  let finish!: () => void;
  const staying = new Promise<void>((resolve) => (finish = resolve));
  const holder = holdBarrier(pool, 'a33-hung', () => staying);
  await new Promise((resolve) => setTimeout(resolve, 200));
  let beats = 0;
  let settled: string | undefined;
  const timeoutMs = 3000;
  const barrier = awaitBarrierHolders(proxied, 'a33-hung', { onWait: () => beats++, timeoutMs }).then(
    () => (settled = 'returned'),
    (err: Error) => (settled = `rejected: ${err.message}`),
  );
  // Its try is waiting in Postgres for the lock; then the wire goes silent.
  await new Promise((resolve) => setTimeout(resolve, 500));
  proxy.freeze();
  await new Promise((resolve) => setTimeout(resolve, 4 * timeoutMs));
  const beatsBefore = beats;
  await new Promise((resolve) => setTimeout(resolve, 5000));
  const beatsInLast5s = beats - beatsBefore;
  const verdict =
    settled ?? (beatsInLast5s > 0 ? `still waiting, still heartbeating (${beatsInLast5s} beats in 5 s)` : 'silent');
  finish();
  await holder;
  proxy.thaw();
  await barrier;
  // Either the wait gave up at its bound (4x past it here), or it went quiet so that a heartbeat timeout retries it.
  expect(verdict).not.toMatch(/still heartbeating/);
  // Fixed: a try the server does not answer within its lock_timeout and 5 s fails, and its heartbeats end with it.
  // (Since the barrier is rows, shared/barrier.ts: a look at them that gets no answer within 5 s.)
  expect(verdict).toMatch(/^rejected: The barrier a33-hung: Postgres did not answer in 5000 ms/);
});

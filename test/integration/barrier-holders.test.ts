import { spawn } from 'node:child_process';
import path from 'node:path';
import { awaitBarrierHolders, BARRIER_LEASE_MS, holdBarrier } from '../../shared/barrier';
import type { Pool } from '../../shared/db';
import { barrierWorld } from '../support/barrier-world';

/**
 * The barrier's holders outlive their sessions (shared/barrier.ts holdBarrier / awaitBarrierHolders, sql/020).
 *
 * Invariant: awaitBarrierHolders returns only once every holder that took the barrier before the call has ended its
 * work (kept sends included), or its process has been gone for a lease; it does not wait for holders that came later.
 * Shown here with the holder's session ended by the server (what a Postgres restart or failover does to it), with a
 * holder process SIGKILLed, and with a later holder that never ends.
 */
jest.setTimeout(60_000);

const world = barrierWorld('barrier_holders');
let pool: Pool;

beforeAll(() => {
  pool = world.replayPool(6);
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A page sending (its send stays until `end()`) whose session the server has ended (a restart, a failover). */
async function cutPage(name: string, leaseMs = BARRIER_LEASE_MS) {
  const page = await world.sendingPage(pool, name, leaseMs);
  await pool.query('SELECT pg_terminate_backend($1)', [page.pid]);
  await sleep(200);
  return page;
}

const holderRows = async (name: string) =>
  (await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM barrier_holders WHERE name = $1', [name])).rows[0].n;

it('waits for a holder whose session ended while its send goes on, and returns once the send ended', async () => {
  const page = await cutPage('bh-cut');
  const verdict = world.watchBarrier('bh-cut', page.sending);
  await sleep(1500);
  expect(verdict()).toBe('waiting');
  page.end();
  await page.held;
  // The holder's row goes on another connection (its own has ended); the barrier sees it within its poll.
  for (let i = 0; i < 100 && verdict() === 'waiting'; i++) await sleep(50);
  expect(verdict()).toBe('returned');
  expect(await holderRows('bh-cut')).toBe(0);
});

it('keeps the row of a holder whose session ended alive past its lease while its send goes on (renewed)', async () => {
  const page = await cutPage('bh-renew', 1000);
  const verdict = world.watchBarrier('bh-renew', page.sending);
  await sleep(3500); // three and a half leases
  expect(verdict()).toBe('waiting');
  page.end();
  await page.held;
  for (let i = 0; i < 100 && verdict() === 'waiting'; i++) await sleep(50);
  expect(verdict()).toBe('returned');
});

it('does not wait for holders that took the barrier after its call (no starving)', async () => {
  const first = await cutPage('bh-later');
  const verdict = world.watchBarrier('bh-later', first.sending);
  await sleep(300); // the barrier has looked at the rows
  const later = await cutPage('bh-later');
  expect(verdict()).toBe('waiting');
  first.end();
  await first.held;
  for (let i = 0; i < 100 && verdict() === 'waiting'; i++) await sleep(50);
  expect(verdict()).toBe('returned');
  expect(later.sending()).toBe(true);
  later.end();
  await later.held;
});

it('waits for a SIGKILLed holder process until its lease ran out, not for ever and not less', async () => {
  const leaseMs = 4000;
  const script = `
    const { createPool } = require('./dist/shared/db.js');
    const { holdBarrier } = require('./dist/shared/barrier.js');
    const { createLogger } = require('./dist/shared/logger.js');
    const pool = createPool(process.argv[1], 2, createLogger('silent'));
    holdBarrier(pool, 'bh-killed', async (_client, keep) => {
      process.stdout.write('sending\\n');
      keep(new Promise(() => {}));
    }, { leaseMs: ${leaseMs} });`;
  const child = spawn(process.execPath, ['-e', script, world.databaseUrl()], {
    cwd: path.resolve(__dirname, '../..'),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => chunk.toString().includes('sending') && resolve());
    child.on('exit', (code) => reject(new Error(`the holder exited (${code}) before sending`)));
  });
  child.kill('SIGKILL');
  await new Promise((resolve) => child.on('exit', resolve));
  const killedAt = Date.now();
  let returnedAt: number | undefined;
  await awaitBarrierHolders(pool, 'bh-killed', { timeoutMs: 30_000 }).then(() => (returnedAt = Date.now()));
  // Not before the lease, counted from its last renewal (at most a quarter lease before the kill).
  expect(returnedAt! - killedAt).toBeGreaterThanOrEqual((leaseMs * 3) / 4 - 200);
  expect(returnedAt! - killedAt).toBeLessThan(leaseMs + 3000);
});

it('gives up at its bound naming the holders whose sessions ended', async () => {
  const page = await cutPage('bh-bound');
  await expect(awaitBarrierHolders(pool, 'bh-bound', { timeoutMs: 1500 })).rejects.toThrow(
    /did not let it go within 1500 ms \(1 still held: barrier_holders [0-9a-f-]{36}\)/,
  );
  page.end();
  await page.held;
});

describe('on a pool of two connections', () => {
  let pool2: Pool;
  beforeAll(() => {
    pool2 = world.replayPool(2);
  });

  it('waits for holders that came before it, and their kept work', async () => {
    const order: string[] = [];
    let finish!: () => void;
    const sending = new Promise<void>((resolve) => (finish = resolve));
    let holding!: () => void;
    const holds = new Promise<void>((resolve) => (holding = resolve));
    // A holder whose work outlives it (a send kafkajs finishes after its activity gave up).
    const holder = holdBarrier(pool2, 'test-barrier', async (_client, keep) => {
      keep(sending.then(() => order.push('send ended')));
      holding();
      throw new Error('gave up');
    });
    await expect(holder).rejects.toThrow('gave up');
    await holds;
    let waits = 0;
    const barrier = awaitBarrierHolders(pool2, 'test-barrier', { onWait: () => waits++, timeoutMs: 20_000 }).then(() =>
      order.push('barrier'),
    );
    await new Promise((resolve) => setTimeout(resolve, 2500)); // the barrier has looked at least once
    expect(order).toEqual([]);
    finish();
    await barrier;
    await holdBarrier(pool2, 'test-barrier', async () => order.push('later holder'));
    expect(order).toEqual(['send ended', 'barrier', 'later holder']);
    expect(waits).toBeGreaterThanOrEqual(1);
  }, 30_000);

  it('gives up after its bound while a holder stays', async () => {
    let finish!: () => void;
    const staying = new Promise<void>((resolve) => (finish = resolve));
    const holder = holdBarrier(pool2, 'test-bound', () => staying);
    await new Promise((resolve) => setTimeout(resolve, 200));
    await expect(awaitBarrierHolders(pool2, 'test-bound', { timeoutMs: 1000 })).rejects.toThrow(/did not let it go/);
    finish();
    await holder;
  }, 30_000);

  it('holders take at most half the pool: while their sends are stuck, others still get a connection', async () => {
    let finish!: () => void;
    const stuck = new Promise<void>((resolve) => (finish = resolve));
    const ran: string[] = [];
    // Two pages whose sends a frozen broker holds; the pool has two connections, so one slot for holders.
    const first = holdBarrier(pool2, 'test-slots', async (_client, keep) => {
      ran.push('first');
      keep(stuck);
    });
    // (holdBarrier itself returns once the kept send has ended.)
    for (let i = 0; i < 100 && ran.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    const second = holdBarrier(pool2, 'test-slots', async () => void ran.push('second'));
    await new Promise((resolve) => setTimeout(resolve, 300));
    // Before: the second holder took the last connection, and this waited for a stuck send (an erasure's own pass).
    const { rows } = await pool2.query<{ one: number }>('SELECT 1 AS one');
    expect({ one: rows[0].one, ran }).toEqual({ one: 1, ran: ['first'] });
    finish();
    await Promise.all([first, second]);
    expect(ran).toEqual(['first', 'second']);
  }, 30_000);
});

// attack39 (a holder cut off for a lease, fenced, then sending on an epoch taken after the fence): a waiter claims an
// expired row before it fences its scope, and from the claim on the holder's guard (`held`) refuses.
it("claims an expired holder's row before fencing its scope: the holder's guard refuses from then on", async () => {
  let guard!: () => Promise<void>;
  let release!: () => void;
  const holding = holdBarrier(
    pool,
    'bh-claim',
    async (_client, keep, held) => {
      await held(); // a live holder's guard lets its send through
      guard = held;
      keep(new Promise<void>((resolve) => (release = resolve)));
    },
    { fence: 'scope-claim' },
  );
  for (let i = 0; i < 100 && !guard; i++) await sleep(20);
  // The lease runs out (its renewals every lease / 4 are far off): what a holder cut off from Postgres comes to.
  await pool.query(`UPDATE barrier_holders SET expires_at = now() - interval '1 second' WHERE name = 'bh-claim'`);
  const seen: { scope: string; claimed: number; guard: string }[] = [];
  await awaitBarrierHolders(pool, 'bh-claim', {
    timeoutMs: 10_000,
    fence: async (scope) => {
      const { rows } = await pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM barrier_holders WHERE name = 'bh-claim' AND claimed_at IS NOT NULL`,
      );
      const verdict = await guard().then(
        () => 'sends',
        (err: Error) => err.message,
      );
      seen.push({ scope, claimed: rows[0].n, guard: verdict });
    },
  });
  expect(seen).toEqual([{ scope: 'scope-claim', claimed: 1, guard: expect.stringMatching(/no longer holds/) }]);
  expect(await holderRows('bh-claim')).toBe(0);
  release();
  await holding;
});

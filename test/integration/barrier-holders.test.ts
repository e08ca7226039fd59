import { spawn } from 'node:child_process';
import path from 'node:path';
import { awaitSharedHolders, createPool, withSharedLock, type Pool } from '../../shared/db';
import { createLogger } from '../../shared/logger';
import { createTestDatabase } from '../support/database';
import { baseConfig } from '../support/env';

/**
 * The barrier's holders outlive their sessions (shared/db.ts withSharedLock / awaitSharedHolders, sql/020).
 *
 * Invariant: awaitSharedHolders returns only once every holder that took the barrier before the call has ended its
 * work (kept sends included), or its process has been gone for a lease; it does not wait for holders that came later.
 * Shown here with the holder's session ended by the server (what a Postgres restart or failover does to it), with a
 * holder process SIGKILLed, and with a later holder that never ends.
 */
jest.setTimeout(60_000);

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let pool: Pool;

beforeAll(async () => {
  db = await createTestDatabase(baseConfig().databaseUrl, 'barrier_holders');
  pool = createPool(db.databaseUrl, 6, createLogger('silent'));
});
afterAll(async () => {
  await pool?.end();
  await db?.drop();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A holder whose work stays until `end()`; its session is ended by the server once `cut()` is called. */
function heldSend(name: string, leaseMs?: number) {
  let end!: () => void;
  const ending = new Promise<void>((resolve) => (end = resolve));
  let pid: number | undefined;
  let sending = false;
  const held = withSharedLock(
    pool,
    name,
    async (client, keep) => {
      pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
      sending = true;
      keep(ending.then(() => (sending = false)));
    },
    { leaseMs },
  ).catch(() => undefined);
  return {
    held,
    end,
    sending: () => sending,
    async started() {
      for (let i = 0; i < 200 && !sending; i++) await sleep(10);
      expect(sending).toBe(true);
    },
    async cut() {
      await pool.query('SELECT pg_terminate_backend($1)', [pid]);
      await sleep(200);
    },
  };
}

/** What the barrier did within ms: 'returned' (with whether the send was still on), 'rejected', or 'waiting'. */
function watch(barrier: Promise<void>, sending: () => boolean) {
  let verdict = 'waiting';
  void barrier.then(
    () => (verdict = sending() ? 'returned while sending' : 'returned'),
    (err: Error) => (verdict = `rejected: ${err.message}`),
  );
  return () => verdict;
}

const holderRows = async (name: string) =>
  (await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM barrier_holders WHERE name = $1', [name])).rows[0].n;

it('waits for a holder whose session ended while its send goes on, and returns once the send ended', async () => {
  const page = heldSend('bh-cut');
  await page.started();
  await page.cut();
  const verdict = watch(awaitSharedHolders(pool, 'bh-cut', { timeoutMs: 30_000 }), page.sending);
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
  const page = heldSend('bh-renew', 1000);
  await page.started();
  await page.cut();
  const verdict = watch(awaitSharedHolders(pool, 'bh-renew', { timeoutMs: 30_000 }), page.sending);
  await sleep(3500); // three and a half leases
  expect(verdict()).toBe('waiting');
  page.end();
  await page.held;
  for (let i = 0; i < 100 && verdict() === 'waiting'; i++) await sleep(50);
  expect(verdict()).toBe('returned');
});

it('does not wait for holders that took the barrier after its call (no starving)', async () => {
  const first = heldSend('bh-later');
  await first.started();
  await first.cut();
  const verdict = watch(awaitSharedHolders(pool, 'bh-later', { timeoutMs: 30_000 }), first.sending);
  await sleep(300); // the barrier has looked at the rows and passed the lock (the only live holder is gone)
  const later = heldSend('bh-later');
  await later.started();
  await later.cut();
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
    const { createPool, withSharedLock } = require('./dist/shared/db.js');
    const { createLogger } = require('./dist/shared/logger.js');
    const pool = createPool(process.argv[1], 2, createLogger('silent'));
    withSharedLock(pool, 'bh-killed', async (_client, keep) => {
      process.stdout.write('sending\\n');
      keep(new Promise(() => {}));
    }, { leaseMs: ${leaseMs} });`;
  const child = spawn(process.execPath, ['-e', script, db.databaseUrl], {
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
  await awaitSharedHolders(pool, 'bh-killed', { timeoutMs: 30_000 }).then(() => (returnedAt = Date.now()));
  // Not before the lease, counted from its last renewal (at most a quarter lease before the kill).
  expect(returnedAt! - killedAt).toBeGreaterThanOrEqual((leaseMs * 3) / 4 - 200);
  expect(returnedAt! - killedAt).toBeLessThan(leaseMs + 3000);
});

it('gives up at its bound naming the holders whose sessions ended', async () => {
  const page = heldSend('bh-bound');
  await page.started();
  await page.cut();
  await expect(awaitSharedHolders(pool, 'bh-bound', { timeoutMs: 1500 })).rejects.toThrow(
    /did not let it go \(1 whose sessions ended: barrier_holders \d+\) within 1500 ms/,
  );
  page.end();
  await page.held;
});

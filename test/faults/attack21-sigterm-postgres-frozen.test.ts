import type { ChildProcess } from 'node:child_process';
import { exited, spawnCli, spawnIngest } from '../support/ingest-process';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';
import { freezableProxy } from '../support/freezable-proxy';

/**
 * attack21: a SIGTERM while Postgres does not answer (frozen: a VM paused, SIGSTOP, a network path that drops
 * packets) and a batch is being written.
 *
 * Invariant (brief): every stop of an ingest process ends within SHUTDOWN_TIMEOUT (30 s) with exit 0, Postgres down
 * included; the records sent meanwhile are journaled exactly once by the next consumer.
 *
 * Attack (fixed: the pool's end is bounded, endPool in shared/db.ts): the batch's INSERT waits for an answer that does not come. statement_timeout is enforced by the server
 * (which is the one not answering), and the pool has no client-side query timeout, so the query never ends. Ingest's
 * stop gives up on its consumer after CONSUMER_DISCONNECT_TIMEOUT_MS (disconnectWithin, 4e9bd2f) and goes on — but
 * the batch still holds its pool client, and the last stopper, `postgres-pool` (pool.end()), waits for every client
 * to be released: the shutdown runs into SHUTDOWN_TIMEOUT and exits 1 ("postgres-pool was still stopping").
 *
 * Postgres is frozen by a TCP proxy in front of it that stops passing bytes (and FINs) on; the test's own pool talks
 * to Postgres directly.
 */
let h: SinkHarness;

beforeAll(async () => {
  h = await createSinkHarness('a21pgfrozen');
}, 60_000);
afterAll(() => h?.close());

const STOPPED_IN_TIME = { code: 0, withinShutdownTimeout: true, shutdownLine: undefined };

/** SIGTERMs the process and reports how its stop ended: exit code, within SHUTDOWN_TIMEOUT, its give-up line. */
async function sigterm(child: ChildProcess, stdout: () => string) {
  const signalled = Date.now();
  child.kill('SIGTERM');
  const code = await Promise.race([exited(child), new Promise((r) => setTimeout(() => r('running'), 45_000))]);
  const tookMs = Date.now() - signalled;
  const shutdownLine = stdout()
    .split('\n')
    .find((line) => line.includes('Shutdown did not finish'))
    ?.slice(0, 300);
  return { code, withinShutdownTimeout: tookMs < 30_000, shutdownLine };
}

it('SIGTERM while Postgres is frozen mid-batch: exits 0 within SHUTDOWN_TIMEOUT, and nothing is lost', async () => {
  const db = new URL(h.config.databaseUrl);
  const proxy = await freezableProxy(db.hostname, Number(db.port || 5432));
  const viaProxy = new URL(h.config.databaseUrl);
  viaProxy.port = String(proxy.port);
  const child = spawnIngest({
    DATABASE_URL: viaProxy.toString(),
    KAFKA_TOPICS: h.config.kafka.topics.join(','),
    KAFKA_GROUP_ID: h.config.kafka.groupId,
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  let stdout = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  try {
    await h.send(
      h.topics.leads,
      [0, 1, 2].map((n) => ({ tenant_id: 'acme', n })),
    );
    await eventually(async () => (await h.journalCount()) === 3, 'the first three records journaled', 60_000);

    proxy.freeze();
    await h.send(
      h.topics.leads,
      [3, 4, 5].map((n) => ({ tenant_id: 'acme', n })),
    );
    await new Promise((r) => setTimeout(r, 4000)); // the batch of 3..5 is fetched and waits on its INSERT

    // Before: code 1 after ~30 s, "Shutdown did not finish within 30000 ms: postgres-pool was still stopping".
    expect(await sigterm(child, () => stdout)).toEqual(STOPPED_IN_TIME);
    // The pool's bound is what let it go: a batch still held its client (else this proves nothing).
    expect(stdout).toContain('Postgres clients still busy');
  } finally {
    child.kill('SIGKILL');
    await exited(child);
    proxy.thaw();
    await proxy.close();
  }

  // The next consumer journals what was in flight, once.
  await h.startIngest();
  await eventually(async () => (await h.journalCount()) === 6, 'all six records journaled', 120_000, 500);
  await new Promise((r) => setTimeout(r, 2000));
  expect(await h.journalCount()).toBe(6);
}, 240_000);

it("SIGTERM to an API process while Postgres is frozen: exits 0 within SHUTDOWN_TIMEOUT (the live stream's LISTEN connection and the pool are left)", async () => {
  const db = new URL(h.config.databaseUrl);
  const proxy = await freezableProxy(db.hostname, Number(db.port || 5432));
  const viaProxy = new URL(h.config.databaseUrl);
  viaProxy.port = String(proxy.port);
  const port = 20_000 + Math.floor(Math.random() * 10_000);
  const api = spawnCli('api', {
    DATABASE_URL: viaProxy.toString(),
    KAFKA_TOPICS: h.config.kafka.topics.join(','),
    KAFKA_GROUP_ID: h.config.kafka.groupId,
    API_HOST: '127.0.0.1',
    API_PORT: String(port),
  });
  let stdout = '';
  api.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  try {
    await eventually(async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok, 'the API up', 60_000);
    // A request that holds a pool client when the server freezes.
    await fetch(`http://127.0.0.1:${port}/health`);
    proxy.freeze();
    const held = fetch(`http://127.0.0.1:${port}/health`).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 2000));

    // Before: exit 1 at 30 s, "api was still stopping" (the live stream's client.end() waits for a close that a
    // frozen server never sends).
    expect(await sigterm(api, () => stdout)).toEqual(STOPPED_IN_TIME);
    await held;
  } finally {
    api.kill('SIGKILL');
    await exited(api);
    proxy.thaw();
    await proxy.close();
  }
}, 120_000);

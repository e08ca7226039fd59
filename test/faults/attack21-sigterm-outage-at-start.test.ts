import net from 'node:net';
import { exited, spawnIngest, untilPrinted } from '../support/ingest-process';
import { createSinkHarness, type SinkHarness } from '../support/sink';

/**
 * attack21: a stop signal while ingest's start waits out an outage of Postgres or Kafka.
 *
 * Invariant (brief, and 171e69a/f4a1474: "a stop signal during ingest's start ... nothing else starts, the process
 * exits 0 within SHUTDOWN_TIMEOUT"): every stop of an ingest process ends within SHUTDOWN_TIMEOUT (30 s) with exit 0,
 * at any moment, Kafka or Postgres down included.
 *
 * Attack (fixed: both waits end on the stop, IngestStartInterrupted): startIngest does two waits before startOrGiveUp/pinGroupStart look at deps.stopRequested, and neither
 * looks at it:
 * - loadLineageKey (journal/lineage.ts) retries a Postgres outage for up to 120 s, and startIngest only attaches the
 *   stopRequested listener after it;
 * - refuseMissingTopics (ingest/consumer.ts) connects a kafkajs admin with the client's 8 retries (some 40 s of
 *   backoff while the broker refuses connections).
 * A SIGTERM during either runs into watchStopSignals's start deadline: "SIGTERM while starting, and the start did not
 * finish within 30000 ms", exit 1 after 30 s. Nothing has been consumed at that point, so giving up the start is
 * as safe as giving up the pin.
 */
let h: SinkHarness;

beforeAll(async () => {
  h = await createSinkHarness('a21outage');
}, 60_000);
afterAll(() => h?.close());

/** A local port nothing listens on (connections are refused at once: the service is down). */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function sigtermDuringStart(env: Record<string, string>) {
  const child = spawnIngest({
    DATABASE_URL: h.config.databaseUrl,
    KAFKA_TOPICS: h.config.kafka.topics.join(','),
    KAFKA_GROUP_ID: h.config.kafka.groupId,
    LOG_LEVEL: 'info',
    ...env,
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  await untilPrinted(child, 'Metrics listening'); // it catches stop signals from here on; ingest's start follows
  await new Promise((r) => setTimeout(r, 2000)); // the start is waiting on the outage now
  const signalled = Date.now();
  child.kill('SIGTERM');
  const code = await Promise.race([exited(child), new Promise((r) => setTimeout(() => r('still running'), 45_000))]);
  if (code === 'still running') child.kill('SIGKILL');
  const tookMs = Date.now() - signalled;
  return { code, withinShutdownTimeout: tookMs < 30_000, tookMs, stderr: stderr.trim().split('\n').slice(-1)[0] };
}

it('SIGTERM while the start waits for Postgres (down): exits 0 within SHUTDOWN_TIMEOUT', async () => {
  const port = await closedPort();
  const result = await sigtermDuringStart({
    DATABASE_URL: `postgres://crm_events:crm_events@127.0.0.1:${port}/crm_events`,
  });
  // Before the fix: tookMs ~30 000 and stderr "SIGTERM while starting, and the start did not finish within 30000 ms".
  expect(result).toMatchObject({ code: 0, withinShutdownTimeout: true });
}, 90_000);

it('SIGTERM while the start waits for Kafka (down): exits 0 within SHUTDOWN_TIMEOUT', async () => {
  const port = await closedPort();
  const result = await sigtermDuringStart({ KAFKA_BROKERS: `127.0.0.1:${port}` });
  expect(result).toMatchObject({ code: 0, withinShutdownTimeout: true });
}, 90_000);

import type { ChildProcess } from 'node:child_process';
import { freePort } from '../../bench/support/ports';
import { exited, spawnCli } from '../support/ingest-process';
import { seedJournal } from '../support/journal';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';
import { connectSse, domainEvents, type Sse } from '../support/sse';
import { uniqueSuffix } from '../support/env';

/**
 * Issue 11, point 6: the API reads on a small pool of its own. One real `crm-events-sink start` process (ingest,
 * worker and API together, as `npm start` runs them); 100 stream clients resume from Last-Event-ID 0 on a large
 * journal at once, and ingest keeps journaling what is produced meanwhile, while the API never holds more than
 * API_DATABASE_POOL_SIZE connections.
 */
jest.setTimeout(180_000);

const API_POOL = 2;
const CLIENTS = 100;
const MAX_BACKLOG = 2000;
let h: SinkHarness;
let service: ChildProcess;
let base: string;

beforeAll(async () => {
  h = await createSinkHarness('api-pool');
  await seedJournal(h.pool, 200_000, { topics: [h.topics.leads] });
  const port = await freePort();
  service = spawnCli('start', {
    DATABASE_URL: h.databaseUrl,
    DATABASE_POOL_SIZE: '5',
    API_DATABASE_POOL_SIZE: String(API_POOL),
    KAFKA_TOPICS: `${h.topics.leads},${h.topics.jobs}`,
    KAFKA_GROUP_ID: h.config.kafka.groupId,
    TEMPORAL_TASK_QUEUE: `api-pool-${uniqueSuffix()}`,
    API_HOST: '127.0.0.1',
    API_PORT: String(port),
    STREAM_MAX_CLIENTS: String(CLIENTS * 2),
    STREAM_MAX_BACKLOG: String(MAX_BACKLOG),
    AUTH_JWT_SECRET: '',
    AUTH_MODE: '',
  });
  base = `http://127.0.0.1:${port}`;
  await eventually(async () => (await fetch(`${base}/health`)).status === 200, 'the service to be healthy', 60_000);
});

afterAll(async () => {
  service?.kill('SIGTERM');
  if (service) await exited(service);
  await h?.close();
});

it('100 clients catching up from id 0 stay within the API pool, and ingest keeps journaling meanwhile', async () => {
  const apiConnections = async () =>
    (
      await h.pool.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'crm-events-sink-api'",
      )
    ).rows[0].n;
  const clients: Sse[] = await Promise.all(
    Array.from({ length: CLIENTS }, () => connectSse(base, '', { 'last-event-id': '0' })),
  );
  try {
    let most = 0;
    const sampling = setInterval(() => void apiConnections().then((n) => (most = Math.max(most, n))), 50);
    // While the clients catch up: produce, and time how long ingest takes to journal it all.
    const started = Date.now();
    const refs = Array.from({ length: 200 }, (_, i) => `pool-${i}`);
    await h.send(
      h.topics.jobs,
      refs.map((ref) => ({ tenant_id: 'acme', ref })),
    );
    await eventually(
      async () =>
        (
          await h.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM event_journal WHERE topic = $1', [
            h.topics.jobs,
          ])
        ).rows[0].n === refs.length,
      'ingest to journal the 200 events produced during the catch-up',
      30_000,
      100,
    );
    const ingestMs = Date.now() - started;
    await eventually(
      async () => clients.every((c) => c.frames.some((f) => f.data.kind === 'backlog_truncated')),
      'every client to get its capped backlog',
      120_000,
    );
    clearInterval(sampling);
    expect(clients.every((c) => c.status === 200)).toBe(true);
    expect(clients.map((c) => domainEvents(c).filter((f) => Number(f.id) <= 200_000).length)).toEqual(
      Array(CLIENTS).fill(MAX_BACKLOG),
    );
    expect(most).toBeGreaterThan(0);
    expect(most).toBeLessThanOrEqual(API_POOL);
    expect(ingestMs).toBeLessThan(20_000);
  } finally {
    for (const c of clients) c.close();
  }
});

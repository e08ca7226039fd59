import type { ChildProcess } from 'node:child_process';
import { seedSeries } from '../../bench/support/journal';
import { freePort } from '../../bench/support/ports';
import { sampleConnections } from '../../bench/support/connections';
import { sampleRss } from '../../bench/support/process';
import { exited, spawnCli } from '../support/ingest-process';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';
import { connectSse, domainEvents, type Sse } from '../support/sse';
import { uniqueSuffix } from '../support/env';

/**
 * Issue 11, point 6: no API load can starve ingest. One real `crm-events-sink start` process (ingest, worker and API
 * together, as `npm start` runs them, with its heap limit) on a journal of 1,000,000 rows; 100 slow stream clients
 * resume from Last-Event-ID 0 at once, reading in short bursts, while records are produced. What must hold, whatever
 * the speed of the machine: every record produced meanwhile is journaled; the API never holds more Postgres
 * connections than API_DATABASE_POOL_SIZE (its pool is named crm-events-sink-api in pg_stat_activity); no catch-up
 * read ever runs on a connection of the pool ingest commits on (crm-events-sink); the process's memory stays
 * bounded by the clients' buffers, not by the journal; and each client gets exactly its capped backlog. The rate
 * ingest keeps under this load is measured in bench/ (`api-pool`), as a ratio to the same run without the load.
 */
jest.setTimeout(900_000);

const ROWS = 1_000_000;
const API_POOL = 2;
const INGEST_POOL = 5;
const CLIENTS = 100;
const MAX_BACKLOG = 2000;
const CLIENT_BUFFER = 200;
const PRODUCED = 3000;
const SEED_PART = 100_000;
/**
 * Growth of the process's resident memory allowed while the clients catch up. Each client holds at most a page of
 * CLIENT_BUFFER frames in the process (the next page is read only once the socket took the last), some 100 × 200 ×
 * ~1 kB ≈ 20 MB in all, plus 100 sockets and the garbage the catch-ups leave between collections; what the clients
 * are sent in all is 100 × 2,000 frames (~150 MB), and the journal ~1 GB.
 */
const MAX_RSS_GROWTH_MB = 120;
/** The catch-up read (repository/event-journal.ts eventsAfter, bounded by the feed's last id) as pg_stat_activity shows it. */
const CATCH_UP_SQL = '%FROM event_journal WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3%';

let h: SinkHarness;
let service: ChildProcess;
let base: string;

beforeAll(async () => {
  h = await createSinkHarness('api-pool');
  // In parts, each well within the pool's statement timeout.
  for (let offset = 0; offset < ROWS; offset += SEED_PART) {
    await seedSeries(h.pool, {
      count: SEED_PART,
      topics: [h.topics.leads],
      tenants: 50,
      from: new Date(Date.now() - 2 * 86_400_000),
      stepMs: 100,
      offset,
    });
  }
  await h.pool.query('VACUUM ANALYZE event_journal');
  const port = await freePort();
  service = spawnCli('start', {
    NODE_OPTIONS: '--max-old-space-size=512', // what `npm start` gives it
    DATABASE_URL: h.databaseUrl,
    DATABASE_POOL_SIZE: String(INGEST_POOL),
    API_DATABASE_POOL_SIZE: String(API_POOL),
    KAFKA_TOPICS: `${h.topics.leads},${h.topics.jobs}`,
    KAFKA_GROUP_ID: h.config.kafka.groupId,
    TEMPORAL_TASK_QUEUE: `api-pool-${uniqueSuffix()}`,
    API_HOST: '127.0.0.1',
    API_PORT: String(port),
    STREAM_MAX_CLIENTS: String(CLIENTS * 2),
    STREAM_MAX_BACKLOG: String(MAX_BACKLOG),
    STREAM_CLIENT_BUFFER: String(CLIENT_BUFFER),
    AUTH_JWT_SECRET: '',
    AUTH_MODE: '',
  });
  base = `http://127.0.0.1:${port}`;
  await eventually(async () => (await fetch(`${base}/health`)).status === 200, 'the service to be healthy', 120_000);
});

afterAll(async () => {
  service?.kill('SIGTERM');
  if (service) await exited(service);
  await h?.close();
});

/** Reads in short bursts: the response is paused but for `burstMs` every `everyMs`, each client at its own phase. */
function readSlowly(client: Sse, everyMs = 1000, burstMs = 20): () => void {
  client.res.pause();
  let burst: NodeJS.Timeout | undefined;
  let pause: NodeJS.Timeout | undefined;
  const phase = setTimeout(() => {
    burst = setInterval(() => {
      client.res.resume();
      pause = setTimeout(() => client.res.pause(), burstMs);
    }, everyMs);
  }, Math.random() * everyMs);
  return () => {
    clearTimeout(phase);
    clearInterval(burst);
    clearTimeout(pause);
    client.res.resume();
  };
}

it('100 slow clients catching up from id 0 on 1M rows: ingest journals everything, on its own connections', async () => {
  const journaled = async (topic: string) =>
    (await h.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM event_journal WHERE topic = $1', [topic]))
      .rows[0].n;
  const memory = sampleRss(service.pid);
  const baselineMb = memory.stop().peakRssMb;
  const rss = sampleRss(service.pid);
  const connections = sampleConnections(h.databaseUrl, CATCH_UP_SQL);
  const clients: Sse[] = await Promise.all(
    Array.from({ length: CLIENTS }, () => connectSse(base, '', { 'last-event-id': '0' })),
  );
  const fullSpeed = clients.map((c) => readSlowly(c));
  try {
    // While the slow clients catch up: produce, in chunks, and wait for ingest to journal all of it.
    for (let i = 0; i < PRODUCED; i += 500) {
      await h.send(
        h.topics.jobs,
        Array.from({ length: 500 }, (_, j) => ({ tenant_id: 'acme', ref: `pool-${i + j}` })),
      );
    }
    await eventually(
      async () => (await journaled(h.topics.jobs)) === PRODUCED,
      `ingest to journal the ${PRODUCED} records produced during the catch-up`,
      300_000,
      200,
    );
    for (const resume of fullSpeed) resume();
    const ended = (c: Sse) => c.frames.some((f) => f.data.kind === 'backlog_truncated' || f.data.kind === 'error');
    await eventually(async () => clients.every(ended), 'every client to get its capped backlog', 300_000);
    const pools = await connections.stop();
    const api = pools['crm-events-sink-api'] ?? { most: 0, running: 0 };
    const ingest = pools['crm-events-sink'] ?? { most: 0, running: 0 };
    const { peakRssMb } = rss.stop();

    expect(await journaled(h.topics.jobs)).toBe(PRODUCED);
    expect(clients.every((c) => c.status === 200)).toBe(true);
    // A catch-up that waited long for the API's pool must not give up ("Could not read the journal to resume").
    expect(clients.filter((c) => c.frames.some((f) => f.data.kind === 'error')).length).toBe(0);
    // Exactly the first MAX_BACKLOG rows of the journal, in order, to every client: paced, nothing dropped.
    const expected = Array.from({ length: MAX_BACKLOG }, (_, i) => String(i + 1));
    for (const c of clients) {
      expect(
        domainEvents(c)
          .slice(0, MAX_BACKLOG)
          .map((f) => f.id),
      ).toEqual(expected);
    }
    expect(api.running).toBeGreaterThan(0); // catch-up reads seen on the API's pool
    expect(ingest.running).toBe(0); // and never on ingest's
    expect(api.most).toBeGreaterThan(0);
    expect(api.most).toBeLessThanOrEqual(API_POOL);
    expect(ingest.most).toBeLessThanOrEqual(INGEST_POOL);
    expect(peakRssMb - baselineMb).toBeLessThan(MAX_RSS_GROWTH_MB);
  } finally {
    for (const resume of fullSpeed) resume();
    for (const c of clients) c.close();
  }
});

import net from 'node:net';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../api/app';
import { notifyJournaled } from '../../repository/event-journal';
import { createPool, type Pool } from '../../shared/db';
import { seedJournal } from '../support/journal';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';
import { connectSse, domainEvents } from '../support/sse';

/**
 * Attack (issue 11, point 6, "a dedicated small pool for API reads"): the API's pool (API_DATABASE_POOL_SIZE, 4 by
 * default) serves the live feed's reads, the catch-ups and every read route, and GET /events/export holds one of its
 * connections for as long as its client takes to read the export (up to EXPORT_TIMEOUT, an hour). Four clients that
 * start an export and stop reading take every connection: the live feed can no longer read what ingest commits, so
 * every live-stream client of the process stops receiving events, for as long as the exports stay open.
 */
jest.setTimeout(120_000);

let h: SinkHarness;
let pool: Pool;
let app: FastifyInstance;
let port: number;
const sockets: net.Socket[] = [];

beforeAll(async () => {
  h = await createSinkHarness('atk11b-stalled-exports');
  // About 25 MB of journal: an export of it does not fit in the sockets' buffers of a client that stops reading.
  await seedJournal(h.pool, 20_000, { topics: [h.topics.leads], label: 'x'.repeat(1200) });
  // The API's own pool, as startApiComponent makes it.
  pool = createPool(h.databaseUrl, h.config.api.databasePoolSize, h.log);
  app = await buildApp({ config: h.config, pool, metrics: h.metrics, log: h.log, healthChecks: {} });
  await app.listen({ host: '127.0.0.1', port: 0 });
  port = (app.server.address() as { port: number }).port;
});
afterAll(async () => {
  for (const s of sockets) s.destroy();
  await app?.close();
  await pool?.end();
  await h?.close();
});

/** Starts an export, reads the response head, then never reads again; resolves with the status line. */
function stalledExport(): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      socket.write(`GET /events/export HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
    });
    sockets.push(socket);
    socket.once('data', (chunk: Buffer) => {
      socket.pause();
      resolve(chunk.toString().split('\r\n')[0]);
    });
    socket.on('error', () => undefined);
  });
}

it('exports whose clients stop reading leave reads room and do not stop the live stream for everyone', async () => {
  const live = await connectSse(`http://127.0.0.1:${port}`, '?tenant_id=after-exports');
  try {
    await eventually(async () => live.frames.length > 0, 'the live client to be connected');
    const statuses: string[] = [];
    for (let i = 0; i < h.config.api.databasePoolSize; i++) statuses.push(await stalledExport());
    // All but two of the pool's connections may export at once; the rest are told to come back.
    const running = h.config.api.databasePoolSize - 2;
    expect(statuses.slice(0, running)).toEqual(Array(running).fill('HTTP/1.1 200 OK'));
    expect(statuses.slice(running)).toEqual(Array(2).fill('HTTP/1.1 503 Service Unavailable'));
    // Reads still find a connection.
    expect((await app.inject({ method: 'GET', url: '/events?limit=1' })).statusCode).toBe(200);
    // Ingest journals an event and announces it.
    const { rows } = await h.pool.query<{ id: number }>(
      `INSERT INTO event_journal (tenant_id, topic, payload) VALUES ('after-exports', $1, '{"n": 1}') RETURNING id`,
      [h.topics.leads],
    );
    await notifyJournaled(h.pool, rows[0].id);
    await eventually(async () => domainEvents(live).length === 1, 'the live event', 30_000).catch(() => undefined);
    expect(domainEvents(live).map((f) => Number(f.id))).toEqual([rows[0].id]);
  } finally {
    live.close();
  }
});

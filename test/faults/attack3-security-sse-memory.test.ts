import net from 'node:net';
import { startApiProcess, type ApiProcess } from '../support/api-process';
import { exited } from '../support/ingest-process';
import { createSinkHarness, type SinkHarness } from '../support/sink';
import { signToken } from '../support/tokens';

/**
 * Attack (issue 11, point 6, "SSE backlog capped ... no API load can starve ingest"; "the process stays up"): the
 * live stream bounds what it holds for a slow client in frames (STREAM_CLIENT_BUFFER, catch-up pages of up to 500
 * rows), never in bytes, while one event may be up to INGEST_MAX_EVENT_BYTES (1 MiB by default). A tenant-scoped
 * viewer token opens a dozen streams with Last-Event-ID: 0 and never reads them: each holds its whole catch-up page
 * of large events as frames, and the API process, with the Dockerfile's own heap limit (--max-old-space-size=512),
 * dies of V8 heap exhaustion. (With `npm start` the same process also runs ingest and the worker.)
 */
jest.setTimeout(180_000);

const SECRET = 'atk3-sse-memory-secret-0123456789';
const EVENTS = 100;
const CLIENTS = 12;

let h: SinkHarness;
let api: ApiProcess;
let port: number;
const sockets: net.Socket[] = [];

beforeAll(async () => {
  h = await createSinkHarness('atk3-sse-memory');
  // 100 events of about 0.9 MB each: under INGEST_MAX_EVENT_BYTES (1 MiB), so ingest would journal them as they are.
  await h.pool.query(
    `INSERT INTO event_journal (tenant_id, topic, payload, received_at, kafka_key)
     SELECT 'bigco', $1, jsonb_build_object('tenant_id', 'bigco', 'notes', repeat(md5(g::text), 28000)), now(), 'big-' || g
       FROM generate_series(1, $2) AS g`,
    [h.topics.leads, EVENTS],
  );
  api = await startApiProcess(h, {
    AUTH_JWT_SECRET: SECRET,
    NODE_OPTIONS: '--max-old-space-size=512', // as the Dockerfile's ENTRYPOINT runs it
  });
  port = api.port;
});

afterAll(async () => {
  for (const s of sockets) s.destroy();
  await api?.stop();
  await h?.close();
});

/** A stream client that reads the response head and the first bytes, then never reads again. */
function slowStream(token: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      socket.write(
        `GET /crm-events HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ${token}\r\n` +
          'Last-Event-ID: 0\r\n\r\n',
      );
    });
    sockets.push(socket);
    socket.once('data', (chunk: Buffer) => {
      socket.pause();
      if (chunk.toString().startsWith('HTTP/1.1 200')) resolve();
      else reject(new Error(`stream refused: ${chunk.toString().split('\r\n')[0]}`));
    });
    socket.on('error', () => undefined); // the API may die under it: that is what is observed below
  });
}

it('a dozen never-read streams of one tenant viewer do not bring the API process down', async () => {
  const token = signToken(
    { sub: 'slow-reader', role: 'viewer', tenant_id: 'bigco', exp: Math.floor(Date.now() / 1000) + 3600 },
    SECRET,
  );
  await Promise.all(Array.from({ length: CLIENTS }, () => slowStream(token)));
  // Observe the process while the catch-ups run (each reads one page of at most 500 rows, then waits for its client).
  const died = await Promise.race([
    exited(api.child).then((code) => ({ code, signal: api.child.signalCode })),
    new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 30_000)),
  ]);
  expect(died).toBeUndefined();
  expect((await fetch(`http://127.0.0.1:${port}/health`)).status).toBe(200);
});

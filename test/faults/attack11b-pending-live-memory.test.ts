import net from 'node:net';
import { notifyJournaled } from '../../repository/event-journal';
import { startApiProcess, type ApiProcess } from '../support/api-process';
import { exited } from '../support/ingest-process';
import { createSinkHarness, type SinkHarness } from '../support/sink';

/**
 * Attack (issue 11, point 6, "SSE backlog capped"; slow clients holding memory): while a resuming client catches up,
 * live rows wait for it in a list bounded at STREAM_CLIENT_BUFFER rows (1000), never in bytes, although the client's
 * own queue is bounded at STREAM_CLIENT_BUFFER_BYTES (8 MiB) because "one event may be a megabyte". A client that
 * resumes with Last-Event-ID: 0 and never reads keeps its catch-up waiting for the socket forever, so every live row
 * ingest journals from then on (up to 1000 of them) stays referenced by that list. With events of about 0.9 MB, under
 * INGEST_MAX_EVENT_BYTES, one such client makes the API process, run with the Dockerfile's heap limit, die of V8 heap
 * exhaustion: the live rows arrive in bursts of 10, each burst alone a small read for the feed.
 */
jest.setTimeout(240_000);

const BURSTS = 70;
const PER_BURST = 10;

let h: SinkHarness;
let api: ApiProcess;
const sockets: net.Socket[] = [];

/** Journals `count` events of about 0.9 MB each in one transaction and announces them, as an ingest batch does. */
async function journalBig(count: number, label: string): Promise<void> {
  const client = await h.pool.connect();
  try {
    await client.query('BEGIN');
    const { rows } = await client.query<{ id: number }>(
      `INSERT INTO event_journal (tenant_id, topic, payload, received_at, kafka_key)
       SELECT 'bigco', $1, jsonb_build_object('tenant_id', 'bigco', 'notes', repeat(md5(g::text || $3), 28000)), now(),
              $3 || '-' || g
         FROM generate_series(1, $2) AS g
       RETURNING id`,
      [h.topics.leads, count, label],
    );
    await notifyJournaled(client, Math.max(...rows.map((r) => r.id)));
    await client.query('COMMIT');
  } finally {
    client.release();
  }
}

beforeAll(async () => {
  h = await createSinkHarness('atk11b-pending-memory');
  await journalBig(20, 'before'); // enough to fill the never-read socket with the first catch-up page
  api = await startApiProcess(h, { NODE_OPTIONS: '--max-old-space-size=512' });
});
afterAll(async () => {
  for (const s of sockets) s.destroy();
  await api?.stop();
  await h?.close();
});

/** A resuming stream client that reads the response head, then never reads again. */
function stalledResume(): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(api.port, '127.0.0.1', () => {
      socket.write(`GET /crm-events HTTP/1.1\r\nHost: 127.0.0.1:${api.port}\r\nLast-Event-ID: 0\r\n\r\n`);
    });
    sockets.push(socket);
    socket.once('data', (chunk: Buffer) => {
      socket.pause();
      if (chunk.toString().startsWith('HTTP/1.1 200')) resolve();
      else reject(new Error(`stream refused: ${chunk.toString().split('\r\n')[0]}`));
    });
    socket.on('error', () => undefined); // the API may die under it: that is what is observed
  });
}

it('one never-read resuming stream does not make live events of a busy ingest pile up until the API dies', async () => {
  await stalledResume();
  const died = exited(api.child).then((code) => ({ code, signal: api.child.signalCode }));
  let dead: { code: unknown; signal: unknown } | undefined;
  void died.then((d) => (dead = d));
  for (let i = 0; i < BURSTS && !dead; i++) {
    await journalBig(PER_BURST, `live${i}`);
    await new Promise((r) => setTimeout(r, 300)); // the feed reads each burst on its own
  }
  const after = await Promise.race([died, new Promise<undefined>((r) => setTimeout(() => r(undefined), 15_000))]);
  expect(after).toBeUndefined();
  expect((await fetch(`${api.url}/health`)).status).toBe(200);
});

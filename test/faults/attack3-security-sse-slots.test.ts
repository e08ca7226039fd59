import net from 'node:net';
import { startApiProcess, type ApiProcess } from '../support/api-process';
import { createSinkHarness, type SinkHarness } from '../support/sink';
import { signToken } from '../support/tokens';

/**
 * Attack (issue 11, point 6, "limits that hold"; tenant scoping): STREAM_MAX_CLIENTS is one pool of live-stream
 * slots for the whole API, with no share per token or tenant. A tenant-scoped viewer — the least a token can be —
 * takes every slot, and every other tenant's console and stream clients get 503 until it lets go.
 */
jest.setTimeout(120_000);

const SECRET = 'atk3-sse-slots-secret-0123456789';
const SLOTS = 4;

let h: SinkHarness;
let api: ApiProcess;
const sockets: net.Socket[] = [];

const token = (sub: string, tenant: string) =>
  signToken({ sub, role: 'viewer', tenant_id: tenant, exp: Math.floor(Date.now() / 1000) + 3600 }, SECRET);

beforeAll(async () => {
  h = await createSinkHarness('atk3-sse-slots');
  api = await startApiProcess(h, { AUTH_JWT_SECRET: SECRET, STREAM_MAX_CLIENTS: String(SLOTS) });
});

afterAll(async () => {
  for (const s of sockets) s.destroy();
  await api?.stop();
  await h?.close();
});

/** Opens a stream and keeps it open; resolves with the status line once the response head arrives. */
function holdStream(bearer: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(api.port, '127.0.0.1', () =>
      socket.write(
        `GET /crm-events HTTP/1.1\r\nHost: 127.0.0.1:${api.port}\r\nAuthorization: Bearer ${bearer}\r\n\r\n`,
      ),
    );
    sockets.push(socket);
    socket.once('data', (chunk: Buffer) => resolve(chunk.toString().split('\r\n')[0]));
    socket.on('error', reject);
  });
}

it("one tenant viewer's streams do not lock every other tenant out of the live stream", async () => {
  const hog = token('hog', 'tenant-a');
  const held = [];
  for (let i = 0; i < SLOTS; i++) held.push(await holdStream(hog));
  expect(held).toEqual(Array(SLOTS).fill('HTTP/1.1 200 OK'));

  const other = await fetch(`${api.url}/crm-events`, {
    headers: { authorization: `Bearer ${token('someone-else', 'tenant-b')}` },
  });
  const status = other.status;
  await other.body?.cancel();
  expect(status).toBe(200);
});

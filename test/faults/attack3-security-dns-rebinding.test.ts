import http from 'node:http';
import { startApiProcess, type ApiProcess } from '../support/api-process';
import { seedJournal } from '../support/journal';
import { createSinkHarness, type SinkHarness } from '../support/sink';

/**
 * Attack (issue 11, points 1 and 2): with auth off the API trusts "whoever can reach 127.0.0.1" and counts on the
 * browser guard (JSON only + X-Requested-By) to keep web pages out. DNS rebinding defeats both: a page on
 * http://rebind.attacker.example:<port> whose name is re-pointed at 127.0.0.1 is same-origin with the API in the
 * operator's browser, so it may send X-Requested-By and application/json without any preflight, and read the
 * answers. The only thing that tells such a request apart is its Host header (the attacker's name), which the API
 * never looks at. A real `crm-events-sink api` process, auth off, bound to loopback as the defaults make it.
 */
jest.setTimeout(120_000);

const REBOUND = 'rebind.attacker.example';

let h: SinkHarness;
let api: ApiProcess;
let port: number;

beforeAll(async () => {
  h = await createSinkHarness('atk3-rebind');
  await seedJournal(h.pool, 3, { topics: [h.topics.leads], tenants: ['acme'] });
  api = await startApiProcess(h, { AUTH_JWT_SECRET: '', AUTH_MODE: '' });
  port = api.port;
});

afterAll(async () => {
  await api?.stop();
  await h?.close();
});

/** What the operator's browser sends for a same-origin fetch() from the rebound page: its own name as Host. */
function fromReboundPage(method: string, path: string, body?: object): Promise<{ status: number; body: string }> {
  const origin = `http://${REBOUND}:${port}`;
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1', // where the rebound name now points
        port,
        method,
        path,
        headers: {
          host: `${REBOUND}:${port}`,
          origin,
          referer: `${origin}/`,
          'x-requested-by': 'rebound-page', // same-origin: no preflight, any header goes
          ...(payload !== undefined && { 'content-type': 'application/json' }),
        },
      },
      (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

it('a rebound page cannot set every topic to 1 day of retention through the loopback API', async () => {
  const res = await fromReboundPage('PUT', '/retention', { policies: { '*': 1 } });
  const { rows } = await h.pool.query<{ topic: string; keep_days: number | null }>(
    'SELECT topic, keep_days FROM retention_policies',
  );
  // What must not happen is the change; then any 4xx refusal would do (403, or 421 Misdirected Request).
  expect(rows).toEqual([]);
  expect(res.status).toBeGreaterThanOrEqual(400);
  expect(res.status).toBeLessThan(500);
});

it('a rebound page cannot read the journal through the loopback API', async () => {
  const res = await fromReboundPage('GET', '/events?limit=10');
  expect(res.status).toBeGreaterThanOrEqual(400);
  expect(res.status).toBeLessThan(500);
  expect(res.body).not.toContain('acme');
});

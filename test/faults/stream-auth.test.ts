import http from 'node:http';
import { signToken } from '../support/tokens';
import { createApiEnv, type ApiEnv } from '../support/api';
import { eventually } from '../support/sink';

const SECRET = 'stream-auth-test-secret-0123456789';
let env: ApiEnv;
let base: string;

beforeAll(async () => {
  env = await createApiEnv('streamauth', { env: { AUTH_JWT_SECRET: SECRET }, worker: false });
  await env.app.listen({ host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(env.app.server.address() as { port: number }).port}/crm-events`;
});
afterAll(() => env?.close());

const token = (claims: { role: 'viewer' | 'operator'; tenant_id?: string }) =>
  signToken({ sub: 'stream-test', exp: Math.floor(Date.now() / 1000) + 600, ...claims }, SECRET);

/** Opens the stream and collects domain events' tenants until closed. */
function open(query: string): Promise<{ status: number; tenants: string[]; close(): void }> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${base}${query}`, (res) => {
      const out = { status: res.statusCode ?? 0, tenants: [] as string[], close: () => req.destroy() };
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        for (const m of chunk.matchAll(/^data: (.*)$/gm)) {
          const frame = JSON.parse(m[1]);
          if (frame.kind === 'domain_event') out.tenants.push(frame.tenant_id);
        }
      });
      resolve(out);
    });
    req.on('error', (err) => (err.message === 'socket hang up' ? undefined : reject(err)));
  });
}

it('refuses the stream without a valid token', async () => {
  expect((await fetch(base)).status).toBe(401);
  expect((await fetch(`${base}?access_token=not.a.token`)).status).toBe(401);
});

it('a tenant token streams only its own tenant and may not ask for another', async () => {
  const acme = token({ role: 'viewer', tenant_id: 'acme' });
  expect((await fetch(`${base}?access_token=${acme}&tenant_id=globex`)).status).toBe(403);
  const scoped = await open(`?access_token=${acme}`);
  const admin = await open(`?access_token=${token({ role: 'viewer' })}`);
  try {
    expect(scoped.status).toBe(200);
    await new Promise((r) => setTimeout(r, 300));
    await env.h.send(
      env.h.topics.leads,
      [
        { tenant_id: 'globex', n: 1 },
        { tenant_id: 'acme', n: 2 },
        { tenant_id: 'globex', n: 3 },
      ],
      { partition: 0 },
    );
    await eventually(async () => admin.tenants.length === 3, 'the unscoped reader to see all three');
    await new Promise((r) => setTimeout(r, 500));
    expect(scoped.tenants).toEqual(['acme']);
  } finally {
    scoped.close();
    admin.close();
  }
});

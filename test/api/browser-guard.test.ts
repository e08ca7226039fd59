import type { FastifyInstance } from 'fastify';
import { bearer, buildTestApp, createApiEnv, json, produceJournaled, type ApiEnv } from '../support/api';
import { signToken } from '../support/tokens';

/**
 * What a browser may do to the API (issue 11, point 2), on the real stack with auth off — the case where the
 * custom-header rule is the only thing between a hostile page and the loopback API. Chromium shows the same from a
 * real cross-origin page in test/console/console.test.ts.
 */
const SECRET = 'browser-guard-test-secret-0123';
const LISTED = 'https://ops.example.com';
const OTHER = 'https://evil.example.net';

const RANGE = { start: '2000-01-01T00:00:00Z', end: '2100-01-01T00:00:00Z', tenant_id: 'acme', dry_run: true };

let env: ApiEnv;
let eventId: number;

beforeAll(async () => {
  env = await createApiEnv('browser-guard', { env: { API_REPLAY_RATE_LIMIT_PER_MINUTE: '10000' } });
  [eventId] = await produceJournaled(env.h, env.h.topics.leads, [{ tenant_id: 'acme', name: 'guarded' }]);
});

afterAll(() => env?.close());

const replays = async (id: number) => {
  const { rows } = await env.h.pool.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM replay_audit WHERE event_id = $1',
    [id],
  );
  return rows[0].n;
};

/** An app on the same harness with one config change, closed after `run`. */
async function withApp(api: Partial<ApiEnv['h']['config']['api']>, run: (app: FastifyInstance) => Promise<void>) {
  const app = await buildTestApp(env.h, { ...env.h.config, api: { ...env.h.config.api, ...api } });
  try {
    await run(app);
  } finally {
    await app.close();
  }
}

describe('mutating requests', () => {
  it('refuses a text/plain body with 415 naming the content type, and replays nothing', async () => {
    const res = await env.app.inject({
      method: 'POST',
      url: `/replay/${eventId}`,
      headers: { 'content-type': 'text/plain', 'x-requested-by': 'test' },
      payload: 'anything',
    });
    expect(res.statusCode).toBe(415);
    expect(json(res).message).toMatch(/accepts only application\/json.*text\/plain/);
    expect(await replays(eventId)).toBe(0);
  });

  it.each([
    ['application/x-www-form-urlencoded', 'a=1'],
    ['multipart/form-data; boundary=x', '--x\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--x--\r\n'],
  ])('refuses a form body (%s) with 415', async (type, payload) => {
    const res = await env.app.inject({
      method: 'POST',
      url: `/replay/${eventId}`,
      headers: { 'content-type': type },
      payload,
    });
    expect(res.statusCode).toBe(415);
    expect(await replays(eventId)).toBe(0);
  });

  it('refuses JSON without X-Requested-By or a bearer token with 403 naming both', async () => {
    const res = await env.app.inject({ method: 'POST', url: '/replay/batch', payload: { ids: [eventId] } });
    expect(res.statusCode).toBe(403);
    expect(json(res).message).toMatch(/Authorization: Bearer.*X-Requested-By/);
    const bodyless = await env.app.inject({ method: 'POST', url: `/replay/${eventId}` });
    expect(bodyless.statusCode).toBe(403);
    expect(await replays(eventId)).toBe(0);
  });

  it('accepts a bodyless request with X-Requested-By (any value), and the replay happens', async () => {
    const res = await env.app.inject({
      method: 'POST',
      url: `/replay/${eventId}`,
      headers: { 'x-requested-by': 'anything' },
    });
    expect([200, 202]).toContain(res.statusCode);
    expect(await replays(eventId)).toBe(1);
  });

  it('accepts application/json with a charset and X-Requested-By', async () => {
    const res = await env.app.inject({
      method: 'POST',
      url: '/replay/range',
      headers: { 'content-type': 'application/json; charset=utf-8', 'x-requested-by': 'crm-events-console' },
      payload: JSON.stringify(RANGE),
    });
    expect(res.statusCode).toBe(200);
  });

  it('leaves reads alone', async () => {
    expect((await env.app.inject({ method: 'GET', url: '/events/latest' })).statusCode).toBe(200);
  });

  it('with auth on: a bearer token is enough, and a missing token is still a 401', async () => {
    const token = signToken({ sub: 'guard', role: 'operator', exp: Math.floor(Date.now() / 1000) + 600 }, SECRET);
    await withApp({ jwtSecret: SECRET, authMode: 'jwt' }, async (app) => {
      const ok = await app.inject({
        method: 'POST',
        url: '/replay/range',
        headers: bearer(token),
        payload: RANGE,
      });
      expect(ok.statusCode).toBe(200);
      const none = await app.inject({ method: 'POST', url: '/replay/range', payload: RANGE });
      expect(none.statusCode).toBe(401);
    });
  });
});

describe('CORS', () => {
  const preflight = (app: FastifyInstance, origin: string) =>
    app.inject({
      method: 'OPTIONS',
      url: `/replay/${eventId}`,
      headers: {
        origin,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'content-type, x-requested-by',
      },
    });

  it('is off by default: no grant on answers, preflights refused', async () => {
    const res = await preflight(env.app, LISTED);
    expect(res.statusCode).toBe(403);
    expect(json(res).message).toMatch(/not listed in API_CORS_ORIGINS/);
    expect(res.headers['access-control-allow-origin']).toBeUndefined();
    expect(res.headers['access-control-allow-headers']).toBeUndefined();
    const read = await env.app.inject({ method: 'GET', url: '/events/latest', headers: { origin: LISTED } });
    expect(read.statusCode).toBe(200);
    expect(read.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('answers preflights from a listed origin only, allowing X-Requested-By and Authorization', async () => {
    await withApp({ corsOrigins: [LISTED] }, async (app) => {
      const res = await preflight(app, LISTED);
      expect(res.statusCode).toBe(204);
      expect(res.headers['access-control-allow-origin']).toBe(LISTED);
      expect(String(res.headers['access-control-allow-methods'])).toMatch(/\bPOST\b/);
      const headers = String(res.headers['access-control-allow-headers']).split(/,\s*/);
      expect(headers).toEqual(expect.arrayContaining(['x-requested-by', 'authorization', 'content-type']));
      expect(res.headers.vary).toMatch(/Origin/);

      const read = await app.inject({ method: 'GET', url: '/events/latest', headers: { origin: LISTED } });
      expect(read.headers['access-control-allow-origin']).toBe(LISTED);

      for (const origin of [OTHER, `${LISTED}:8443`, 'http://ops.example.com', 'null']) {
        const refused = await preflight(app, origin);
        expect(refused.statusCode).toBe(403);
        expect(refused.headers['access-control-allow-origin']).toBeUndefined();
        const other = await app.inject({ method: 'GET', url: '/events/latest', headers: { origin } });
        expect(other.headers['access-control-allow-origin']).toBeUndefined();
      }
    });
  });
});

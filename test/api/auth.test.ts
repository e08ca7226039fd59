import { Writable } from 'node:stream';
import pino from 'pino';
import type { Role } from '../../api/auth/principal';
import {
  buildTestApp,
  bearer,
  closedWorkflow,
  createApiEnv,
  json,
  produceJournaled,
  replayRowsOf,
  type ApiEnv,
} from '../support/api';
import { eventually } from '../support/sink';
import { signToken } from '../support/tokens';

/**
 * Auth on the real API: HS256 bearer tokens, roles, tenant scope on every route and the per-token replay budget.
 * A real worker runs the replays that are allowed, so "allowed" means the replay really happened.
 */
const SECRET = 'api-auth-test-secret-0123456789';
const RATE = 3;

let env: ApiEnv;
let acme: number[];
let globex: number[];
let dlq: { acme: number; globex: number; none: number };
let serial = 0;

/** A token with a subject of its own, so that every test has its own replay budget. */
function token(role: Role, claims: Record<string, unknown> = {}, secret = SECRET): string {
  return signToken({ sub: `${role}-${++serial}`, role, exp: Math.floor(Date.now() / 1000) + 600, ...claims }, secret);
}

const as = (t: string) => bearer(t);
const inject = (method: string, url: string, headers: Record<string, string> = {}, payload?: object) =>
  env.app.inject({ method: method as 'GET', url, headers, ...(payload ? { payload } : {}) });

beforeAll(async () => {
  env = await createApiEnv('api-auth', {
    env: { AUTH_JWT_SECRET: SECRET, API_REPLAY_RATE_LIMIT_PER_MINUTE: String(RATE) },
  });
  const { leads } = env.h.topics;
  acme = await produceJournaled(env.h, leads, [
    { tenant_id: 'acme', n: 1 },
    { tenant_id: 'acme', n: 2 },
  ]);
  globex = await produceJournaled(env.h, leads, [
    { tenant_id: 'globex', n: 1 },
    { tenant_id: 'globex', n: 2 },
  ]);
  const insertDlq = async (tenant: string | null) =>
    Number(
      (
        await env.h.pool.query<{ id: string }>(
          `INSERT INTO event_dlq (topic, tenant_id, payload, error, reason) VALUES ($1, $2, $3, 'boom', 'db_error') RETURNING id`,
          [leads, tenant, tenant ? { tenant_id: tenant } : { name: 'no tenant' }],
        )
      ).rows[0].id,
    );
  dlq = { acme: await insertDlq('acme'), globex: await insertDlq('globex'), none: await insertDlq(null) };
});

afterAll(async () => {
  await env?.close();
});

/** Every route the OpenAPI document lists, with sample path parameters. */
function documentedRoutes(): { method: string; url: string }[] {
  const doc = env.app.swagger() as { paths: Record<string, Record<string, unknown>> };
  return Object.entries(doc.paths).flatMap(([path, methods]) =>
    Object.keys(methods).map((method) => ({
      method: method.toUpperCase(),
      url: path.replace('{id}', String(acme[0])).replace('{workflowId}', 'replay-event-1-abc'),
    })),
  );
}

const PUBLIC = ['/', '/health', '/healthz', '/console']; // the auth plugin's public list (plus /metrics, /docs: hidden)
const MUTATING = [
  'POST /replay/{id}',
  'POST /replay/batch',
  'POST /replay/range',
  'POST /replays/{workflowId}/pause',
  'POST /replays/{workflowId}/resume',
  'POST /replays/{workflowId}/cancel',
  'POST /replays/{workflowId}/rate',
  'POST /dlq/{id}/retry',
  'PATCH /dlq/retry-schedule',
  'POST /dlq/retry-schedule/trigger',
];

describe('tokens', () => {
  it('every non-public route answers 401 with a JSON error without a token', async () => {
    const doc = env.app.swagger() as { paths: Record<string, Record<string, unknown>> };
    const listed = Object.entries(doc.paths).flatMap(([path, m]) =>
      Object.keys(m).map((method) => `${method.toUpperCase()} ${path}`),
    );
    expect(listed).toEqual(expect.arrayContaining(MUTATING));

    const guarded = documentedRoutes().filter((r) => !PUBLIC.includes(r.url) && !r.url.startsWith('/docs'));
    expect(guarded.length).toBeGreaterThanOrEqual(MUTATING.length + 6);
    for (const { method, url } of guarded) {
      const variants: Record<string, string>[] = [
        {},
        { authorization: 'Basic YWRtaW46YWRtaW4=' },
        { authorization: 'Bearer ' },
      ];
      for (const headers of variants) {
        const res = await inject(method, url, headers, method === 'GET' ? undefined : {});
        expect({ route: `${method} ${url}`, status: res.statusCode }).toEqual({
          route: `${method} ${url}`,
          status: 401,
        });
        expect(res.headers['content-type']).toMatch(/application\/json/);
        expect(json(res)).toEqual({
          statusCode: 401,
          error: 'Unauthorized',
          message: expect.stringMatching(/bearer token/i),
        });
      }
    }
    // Nothing was started or changed by any of those.
    expect((await env.h.pool.query('SELECT 1 FROM replay_audit')).rows).toHaveLength(0);
  });

  it('reads the Bearer scheme case-insensitively (RFC 9110), as the browser guard does', async () => {
    for (const scheme of ['bearer', 'BEARER', 'Bearer']) {
      const res = await env.app.inject({
        method: 'GET',
        url: '/events',
        headers: { authorization: `${scheme} ${token('viewer')}` },
      });
      expect({ scheme, status: res.statusCode }).toEqual({ scheme, status: 200 });
    }
  });

  it('public routes answer without a token', async () => {
    expect((await inject('GET', '/health')).statusCode).toBe(200);
    expect((await inject('GET', '/healthz')).statusCode).toBe(200);
    expect((await inject('GET', '/')).statusCode).toBe(200);
  });

  it('service info names the Temporal UI and the namespace the console links workflows to', async () => {
    const { temporal } = env.h.config;
    expect((await inject('GET', '/')).json()).toMatchObject({
      temporal_ui: temporal.uiUrl,
      temporal_namespace: temporal.namespace,
    });
  });

  it.each([
    ['expired', () => token('admin', { exp: Math.floor(Date.now() / 1000) - 10 }), /expired/],
    ['not yet valid', () => token('admin', { nbf: Math.floor(Date.now() / 1000) + 300 }), /not valid yet/],
    ['signed with another secret', () => token('admin', {}, 'some-other-secret-0123456789'), /signature/],
    ['with alg none', () => unsignedToken({ sub: 'mallory', role: 'admin' }), /algorithm "none" is not accepted/],
    [
      'with alg none and a copied signature',
      () => `${unsignedToken({ sub: 'mallory', role: 'admin' }).slice(0, -1)}.${token('viewer').split('.')[2]}`,
      /algorithm/,
    ],
    ['with the role tampered', () => tamper(token('viewer'), { role: 'admin' }), /signature/],
    ['with an unknown role', () => token('root' as Role), /role/],
    ['without a subject', () => token('admin', { sub: '' }), /subject/],
    ['that never expires (no exp)', () => signToken({ sub: 'forever', role: 'admin' }, SECRET), /no expiry \(exp\)/],
    ['naming a kid no key has', () => signToken({ sub: 'k', role: 'admin', exp: 2e9 }, SECRET, { kid: 'old' }), /kid/],
    ['malformed', () => 'not-a-jwt', /Malformed/],
  ])('a token %s answers 401 naming why', async (_name, make, reason) => {
    for (const [method, url] of [
      ['GET', '/events'],
      ['POST', `/replay/${acme[0]}`],
    ]) {
      const res = await inject(method, url, as(make()));
      expect(res.statusCode).toBe(401);
      expect(json(res)).toEqual({ statusCode: 401, error: 'Unauthorized', message: expect.stringMatching(reason) });
    }
  });
});

describe('roles', () => {
  it('a viewer reads but gets 403 on every mutating route', async () => {
    const viewer = token('viewer');
    expect((await inject('GET', '/events', as(viewer))).statusCode).toBe(200);
    expect((await inject('GET', `/events/${acme[0]}`, as(viewer))).statusCode).toBe(200);
    expect((await inject('GET', '/replays', as(viewer))).statusCode).toBe(200);
    expect((await inject('GET', '/dlq', as(viewer))).statusCode).toBe(200);
    const mutating = documentedRoutes().filter((r) => r.method !== 'GET');
    expect(mutating.length).toBeGreaterThanOrEqual(MUTATING.length);
    for (const { method, url } of mutating) {
      const res = await inject(method, url, as(viewer), {});
      expect({ route: `${method} ${url}`, status: res.statusCode }).toEqual({ route: `${method} ${url}`, status: 403 });
      expect(json(res)).toEqual({
        statusCode: 403,
        error: 'Forbidden',
        message: expect.stringMatching(/viewer.*(operator|admin)/),
      });
    }
    expect((await env.h.pool.query('SELECT 1 FROM replay_audit')).rows).toHaveLength(0);
  });

  it('an operator replays, and so does an admin', async () => {
    for (const role of ['operator', 'admin'] as const) {
      const res = await inject('POST', `/replay/${acme[1]}`, as(token(role)));
      expect(res.statusCode).toBe(200);
      const body = json(res);
      expect(body).toMatchObject({ status: 'replayed', event_id: acme[1], tenant_id: 'acme' });
      const audit = (
        await env.h.pool.query('SELECT requested_by FROM replay_audit WHERE workflow_id = $1', [body.workflow_id])
      ).rows[0];
      expect(audit.requested_by).toMatch(new RegExp(`^${role}-`));
    }
    // The schedule is global: an operator is refused; an admin gets past auth (the empty body is what is refused).
    const byOperator = await inject('PATCH', '/dlq/retry-schedule', as(token('operator')), {});
    expect(byOperator.statusCode).toBe(403);
    expect(json(byOperator).message).toMatch(/needs admin/);
    expect((await inject('PATCH', '/dlq/retry-schedule', as(token('admin')), {})).statusCode).toBe(400);
  });
});

describe('tenant scope', () => {
  const acmeViewer = () => token('viewer', { tenant_id: 'acme' });
  const acmeOperator = () => token('operator', { tenant_id: 'acme' });

  it('a tenant token reads only its tenant on /events, /events/latest and /events/:id', async () => {
    const t = acmeViewer();
    type Row = { id: number; tenant_id: string };
    const listed = json<{ items: Row[] }>(await inject('GET', '/events?limit=1000', as(t))).items;
    expect(listed.length).toBeGreaterThanOrEqual(acme.length);
    expect(new Set(listed.map((r) => r.tenant_id))).toEqual(new Set(['acme']));
    expect(listed.map((r) => r.id)).toEqual(expect.arrayContaining(acme));

    const latest = json<Row[]>(await inject('GET', '/events/latest?limit=1000', as(t)));
    expect(new Set(latest.map((r) => r.tenant_id))).toEqual(new Set(['acme']));
    expect(latest.map((r) => r.id)).toEqual(expect.arrayContaining(acme));

    expect((await inject('GET', '/events?tenant_id=acme', as(t))).statusCode).toBe(200);
    const other = await inject('GET', '/events?tenant_id=globex', as(t));
    expect(other.statusCode).toBe(403);
    expect(json(other).message).toMatch(/scoped to tenant acme/);

    expect((await inject('GET', `/events/${acme[0]}`, as(t))).statusCode).toBe(200);
    const hidden = await inject('GET', `/events/${globex[0]}`, as(t));
    expect(hidden.statusCode).toBe(404);
    expect(json(hidden).message).toContain(String(globex[0]));

    // An unscoped token sees both.
    const all = json<{ items: Row[] }>(await inject('GET', '/events?limit=1000', as(token('viewer')))).items;
    expect(new Set(all.map((r) => r.tenant_id))).toEqual(new Set(['acme', 'globex']));
  });

  it('a tenant token sees only its dead letters', async () => {
    const t = acmeViewer();
    const entries = json<{ id: number; tenant_id: string | null }[]>(await inject('GET', '/dlq', as(t)));
    expect(entries.map((e) => e.id)).toEqual([dlq.acme]);
    expect((await inject('GET', '/dlq?tenant_id=globex', as(t))).statusCode).toBe(403);
    const unscoped = json<{ id: number }[]>(await inject('GET', '/dlq', as(token('viewer'))));
    expect(unscoped.map((e) => e.id).sort()).toEqual([dlq.acme, dlq.globex, dlq.none].sort());
  });

  it('a tenant operator cannot replay or retry another tenant, by id, batch or range', async () => {
    const single = await inject('POST', `/replay/${globex[0]}`, as(acmeOperator()));
    expect(single.statusCode).toBe(404);
    expect(json(single).message).toContain(String(globex[0]));

    const range = await inject('POST', '/replay/range', as(acmeOperator()), {
      start: '2020-01-01T00:00:00Z',
      end: '2030-01-01T00:00:00Z',
      tenant_id: 'globex',
    });
    expect(range.statusCode).toBe(403);
    expect(json(range).message).toMatch(/scoped to tenant acme/);

    // Without a tenant filter the range is pinned to the token's tenant.
    const dryRun = await inject('POST', '/replay/range', as(acmeOperator()), {
      start: '2020-01-01T00:00:00Z',
      end: '2030-01-01T00:00:00Z',
      dry_run: true,
    });
    expect(dryRun.statusCode).toBe(200);
    expect(json(dryRun)).toMatchObject({ matched: acme.length, by_tenant: { acme: acme.length } });

    // A batch naming another tenant's event replays only its own; the other is reported as unknown.
    const batch = await inject('POST', '/replay/batch', as(acmeOperator()), { ids: [acme[0], globex[1]] });
    expect(batch.statusCode).toBe(202);
    const workflowId = json(batch).workflow_id as string;
    const detail = await closedWorkflow(env.app, workflowId, as(token('viewer')));
    expect(detail.result).toMatchObject({ published: 1, unknown_ids: [globex[1]] });
    const rows = await eventually(async () => {
      const r = await replayRowsOf(env.h, workflowId);
      return r.length ? r : undefined;
    }, 'the batch replay journaled');
    await new Promise((r) => setTimeout(r, 1000));
    expect((await replayRowsOf(env.h, workflowId)).map((r) => r.from_id)).toEqual([acme[0]]);
    expect(rows[0].tenant_id).toBe('acme');

    const retry = await inject('POST', `/dlq/${dlq.globex}/retry`, as(acmeOperator()));
    expect(retry.statusCode).toBe(404);
    expect((await inject('POST', `/dlq/${dlq.none}/retry`, as(acmeOperator()))).statusCode).toBe(404);
    const stillPending = await env.h.pool.query('SELECT status, attempts FROM event_dlq WHERE id = ANY($1)', [
      [dlq.globex, dlq.none],
    ]);
    expect(stillPending.rows).toEqual([
      { status: 'pending', attempts: 0 },
      { status: 'pending', attempts: 0 },
    ]);
  });

  it('a tenant token sees only its tenant replays on /replays and /replays/:id', async () => {
    const own = json(await inject('POST', `/replay/${acme[0]}`, as(acmeOperator()))).workflow_id as string;
    const globexOperator = token('operator', { tenant_id: 'globex' });
    const theirs = json(await inject('POST', `/replay/${globex[0]}`, as(globexOperator))).workflow_id as string;
    const unscoped = json(await inject('POST', `/replay/${globex[1]}`, as(token('operator')))).workflow_id as string;

    type Audit = { workflow_id: string; tenant_id: string | null };
    const listed = json<{ items: Audit[] }>(await inject('GET', '/replays?limit=1000', as(acmeViewer()))).items;
    expect(listed.map((a) => a.workflow_id)).toContain(own);
    expect(listed.map((a) => a.workflow_id)).not.toContain(theirs);
    expect(listed.map((a) => a.workflow_id)).not.toContain(unscoped);
    expect(new Set(listed.map((a) => a.tenant_id))).toEqual(new Set(['acme']));
    expect((await inject('GET', '/replays?tenant_id=globex', as(acmeViewer()))).statusCode).toBe(403);

    expect((await inject('GET', `/replays/${own}`, as(acmeViewer()))).statusCode).toBe(200);
    for (const hidden of [theirs, unscoped]) {
      expect((await inject('GET', `/replays/${hidden}`, as(acmeViewer()))).statusCode).toBe(404);
      expect((await inject('POST', `/replays/${hidden}/cancel`, as(acmeOperator()))).statusCode).toBe(404);
    }
  });
});

describe('replay rate limit', () => {
  it(`allows ${RATE} replay requests a minute per token, then 429 with retry-after`, async () => {
    const t = token('operator');
    for (let i = 0; i < RATE; i++) {
      expect((await inject('POST', '/replay/999999', as(t))).statusCode).toBe(404);
    }
    for (const [url, body] of [
      ['/replay/999999', undefined],
      ['/replay/batch', { ids: [1] }],
      ['/replay/range', { start: '2020-01-01T00:00:00Z', end: '2030-01-01T00:00:00Z', dry_run: true }],
      [`/dlq/${dlq.acme}/retry`, undefined],
    ] as const) {
      const limited = await inject('POST', url, as(t), body);
      expect(limited.statusCode).toBe(429);
      expect(json(limited)).toEqual({
        statusCode: 429,
        error: 'Too Many Requests',
        message: expect.stringMatching(/at most 3 replay requests per minute/),
      });
      const retryAfter = Number(limited.headers['retry-after']);
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      expect(retryAfter).toBeLessThanOrEqual(60);
    }
    // Reads are not replay requests, and another token has its own budget.
    expect((await inject('GET', '/events', as(t))).statusCode).toBe(200);
    expect((await inject('POST', '/replay/999999', as(token('operator')))).statusCode).toBe(404);
    const subject = JSON.parse(Buffer.from(t.split('.')[1], 'base64url').toString()).sub;
    expect((await env.h.pool.query('SELECT 1 FROM replay_audit WHERE requested_by = $1', [subject])).rows).toHaveLength(
      0,
    );
  });
});

describe('without a secret', () => {
  it('auth is off and the service says so loudly at start', async () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk, _enc, done) {
        lines.push(JSON.parse(chunk.toString()));
        done();
      },
    });
    const log = pino({ level: 'warn' }, sink);
    const app = await buildTestApp(
      { ...env.h, log },
      { ...env.h.config, api: { ...env.h.config.api, jwtSecret: undefined } },
    );
    try {
      expect(lines.some((l) => l.level === 40 && /AUTH IS OFF/.test(String(l.msg)))).toBe(true);
      expect((await app.inject({ method: 'GET', url: '/events' })).statusCode).toBe(200);
    } finally {
      await app.close();
    }
  });
});

/** An `alg: none` JWT, crafted by hand: header and claims, and an empty signature. */
function unsignedToken(claims: Record<string, unknown>): string {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part({ alg: 'none', typ: 'JWT' })}.${part({ iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 600, ...claims })}.`;
}

/** The same token with some claims changed and the original signature kept. */
function tamper(jwt: string, changes: Record<string, unknown>): string {
  const [header, body, signature] = jwt.split('.');
  const claims = { ...JSON.parse(Buffer.from(body, 'base64url').toString()), ...changes };
  return `${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${signature}`;
}

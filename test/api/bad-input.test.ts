import type { FastifyInstance } from 'fastify';
import { buildTestApp, createApiEnv, json, leaksInternals, type ApiEnv } from '../support/api';

/**
 * Bad requests get a 400 whose message names the problem, before anything is read or started; errors never carry a
 * stack. And with Temporal unreachable, replay routes answer 503 while the read routes keep working.
 * A worker runs although nothing here should reach a workflow: a bad input that slips through then ends in a clear
 * failure (200/202 and an audit row) rather than a request hanging on a workflow nobody runs.
 */
let env: ApiEnv;
let eventId: number;
let dlqId: number;

beforeAll(async () => {
  env = await createApiEnv('api-bad-input', {
    ingest: false,
    env: { API_REPLAY_RATE_LIMIT_PER_MINUTE: '100000' },
  });
  const { leads } = env.h.topics;
  eventId = Number(
    (
      await env.h.pool.query<{ id: string }>(
        'INSERT INTO event_journal (tenant_id, topic, payload) VALUES (\'acme\', $1, \'{"tenant_id":"acme"}\') RETURNING id',
        [leads],
      )
    ).rows[0].id,
  );
  dlqId = Number(
    (
      await env.h.pool.query<{ id: string }>(
        "INSERT INTO event_dlq (topic, tenant_id, payload, error) VALUES ($1, 'acme', '{\"tenant_id\":\"acme\"}', 'boom') RETURNING id",
        [leads],
      )
    ).rows[0].id,
  );
});

afterAll(async () => {
  await env?.close();
});

const range = (overrides: Record<string, unknown> = {}) => ({
  start: '2025-01-01T00:00:00Z',
  end: '2025-01-02T00:00:00Z',
  ...overrides,
});
const manyIds = Array.from({ length: 10_001 }, (_, i) => i + 1);

interface BadInput {
  method: 'GET' | 'POST' | 'PATCH';
  url: string;
  body?: unknown;
  headers?: Record<string, string>;
  /** What the message must say. */
  names: RegExp;
}

const CASES: Record<string, BadInput> = {
  'non-numeric id on POST /replay/:id': { method: 'POST', url: '/replay/abc', names: /params\/id must be integer/ },
  'negative id on POST /replay/:id': { method: 'POST', url: '/replay/-5', names: /params\/id must be >= 1/ },
  'zero id on POST /replay/:id': { method: 'POST', url: '/replay/0', names: /params\/id must be >= 1/ },
  'fractional id on POST /replay/:id': { method: 'POST', url: '/replay/1.5', names: /params\/id must be integer/ },
  'non-numeric id on GET /events/:id': { method: 'GET', url: '/events/abc', names: /params\/id must be integer/ },
  'negative id on GET /events/:id': { method: 'GET', url: '/events/-1', names: /params\/id must be >= 1/ },
  'id beyond bigint on GET /events/:id': { method: 'GET', url: '/events/99999999999999999999', names: /params\/id/ },
  'id beyond bigint on POST /replay/:id': { method: 'POST', url: '/replay/99999999999999999999', names: /params\/id/ },
  'cursor beyond bigint on /events': {
    method: 'GET',
    url: '/events?cursor=99999999999999999999',
    names: /querystring\/cursor/,
  },
  'id beyond bigint in /replay/batch': {
    method: 'POST',
    url: '/replay/batch',
    body: '{"ids": [1, 99999999999999999999]}', // sent as written: JSON numbers have no size limit
    headers: { 'content-type': 'application/json' },
    names: /body\/ids\/1/,
  },
  'non-numeric id on POST /dlq/:id/retry': { method: 'POST', url: '/dlq/x/retry', names: /params\/id must be integer/ },
  'limit 0 on /events/latest': {
    method: 'GET',
    url: '/events/latest?limit=0',
    names: /querystring\/limit must be >= 1/,
  },
  'limit 1001 on /events/latest': {
    method: 'GET',
    url: '/events/latest?limit=1001',
    names: /querystring\/limit must be <= 1000/,
  },
  'non-numeric limit on /events/latest': {
    method: 'GET',
    url: '/events/latest?limit=ten',
    names: /querystring\/limit must be integer/,
  },
  'limit 1001 on /events': { method: 'GET', url: '/events?limit=1001', names: /querystring\/limit must be <= 1000/ },
  'limit 0 on /replays': { method: 'GET', url: '/replays?limit=0', names: /querystring\/limit must be >= 1/ },
  'limit 1001 on /dlq': { method: 'GET', url: '/dlq?limit=1001', names: /querystring\/limit must be <= 1000/ },
  'unparseable since on /events': {
    method: 'GET',
    url: '/events?since=yesterday',
    names: /querystring\/since must match format "date-time"/,
  },
  'since after until on /events': {
    method: 'GET',
    url: '/events?since=2025-01-02T00:00:00Z&until=2025-01-01T00:00:00Z',
    names: /since must be before .*until/,
  },
  'non-boolean replayed on /events': {
    method: 'GET',
    url: '/events?replayed=maybe',
    names: /querystring\/replayed must be boolean/,
  },
  'negative cursor on /events': { method: 'GET', url: '/events?cursor=-3', names: /querystring\/cursor must be >= 1/ },
  'unknown query parameter on /events': {
    method: 'GET',
    url: '/events?colour=red',
    names: /querystring has an unknown field "colour"/,
  },
  // The message should say which values are allowed, not only that none of four constants matched.
  'unknown DLQ status': {
    method: 'GET',
    url: '/dlq?status=lost',
    names: /querystring\/status.*pending.*retrying.*resolved.*parked/,
  },
  'unknown replay kind': {
    method: 'GET',
    url: '/replays?kind=weird',
    names: /querystring\/kind.*single.*batch.*range.*dlq_retry/,
  },
  'start after end on /replay/range': {
    method: 'POST',
    url: '/replay/range',
    body: range({ start: '2025-01-03T00:00:00Z' }),
    names: /body\/start must be before body\/end/,
  },
  'start equal to end on /replay/range': {
    method: 'POST',
    url: '/replay/range',
    body: range({ end: '2025-01-01T00:00:00Z' }),
    names: /body\/start must be before body\/end/,
  },
  'unparseable start on /replay/range': {
    method: 'POST',
    url: '/replay/range',
    body: range({ start: 'last tuesday' }),
    names: /body\/start must match format "date-time"/,
  },
  'impossible end date on /replay/range': {
    method: 'POST',
    url: '/replay/range',
    body: range({ end: '2025-13-45T00:00:00Z' }),
    names: /body\/end must match format "date-time"/,
  },
  'missing end on /replay/range': {
    method: 'POST',
    url: '/replay/range',
    body: { start: '2025-01-01T00:00:00Z' },
    names: /required property 'end'/,
  },
  'zero rate on /replay/range': {
    method: 'POST',
    url: '/replay/range',
    body: range({ max_events_per_second: 0 }),
    names: /body\/max_events_per_second must be > 0/,
  },
  'wrong type of rate on /replay/range': {
    method: 'POST',
    url: '/replay/range',
    body: range({ max_events_per_second: 'fast' }),
    names: /body\/max_events_per_second must be number/,
  },
  'wrong type of dry_run on /replay/range': {
    method: 'POST',
    url: '/replay/range',
    body: range({ dry_run: 'perhaps' }),
    names: /body\/dry_run must be boolean/,
  },
  // JSON has types: a string is not a boolean and a number is not a list, even where a query string would be coerced.
  'dry_run as the string "true" on /replay/range': {
    method: 'POST',
    url: '/replay/range',
    body: range({ dry_run: 'true' }),
    names: /body\/dry_run must be boolean/,
  },
  'tenant_id as a number on /replay/range': {
    method: 'POST',
    url: '/replay/range',
    body: range({ tenant_id: 42 }),
    names: /body\/tenant_id must be string/,
  },
  'ids as a single number on /replay/batch': {
    method: 'POST',
    url: '/replay/batch',
    body: { ids: 5 },
    names: /body\/ids must be array/,
  },
  'ids as strings on /replay/batch': {
    method: 'POST',
    url: '/replay/batch',
    body: { ids: ['1', '2'] },
    names: /body\/ids\/0 must be integer/,
  },
  'wrong type of tenant_id on /replay/range': {
    method: 'POST',
    url: '/replay/range',
    body: range({ tenant_id: { name: 'acme' } }),
    names: /body\/tenant_id must be string/,
  },
  'empty tenant_id on /replay/range': {
    method: 'POST',
    url: '/replay/range',
    body: range({ tenant_id: '' }),
    names: /body\/tenant_id must NOT have fewer than 1 characters/,
  },
  'invalid target topic on /replay/range': {
    method: 'POST',
    url: '/replay/range',
    body: range({ target_topic: 'no spaces allowed' }),
    names: /body\/target_topic must match pattern/,
  },
  'unknown field on /replay/range': {
    method: 'POST',
    url: '/replay/range',
    body: range({ tenant: 'acme' }),
    names: /body has an unknown field "tenant"/,
  },
  '10,001 ids on /replay/batch': {
    method: 'POST',
    url: '/replay/batch',
    body: { ids: manyIds },
    names: /body\/ids must NOT have more than 10000 items/,
  },
  'no ids on /replay/batch': {
    method: 'POST',
    url: '/replay/batch',
    body: { ids: [] },
    names: /body\/ids must NOT have fewer than 1 items/,
  },
  'missing ids on /replay/batch': { method: 'POST', url: '/replay/batch', body: {}, names: /required property 'ids'/ },
  'ids of the wrong type on /replay/batch': {
    method: 'POST',
    url: '/replay/batch',
    body: { ids: { first: 1 } },
    names: /body\/ids must be array/,
  },
  'a non-integer id on /replay/batch': {
    method: 'POST',
    url: '/replay/batch',
    body: { ids: [1, 'two'] },
    names: /body\/ids\/1 must be integer/,
  },
  'a zero id on /replay/batch': {
    method: 'POST',
    url: '/replay/batch',
    body: { ids: [0] },
    names: /body\/ids\/0 must be >= 1/,
  },
  'unknown field on /replay/batch': {
    method: 'POST',
    url: '/replay/batch',
    body: { ids: [1], priority: 'high' },
    names: /body has an unknown field "priority"/,
  },
  'body that is not JSON on /replay/batch': {
    method: 'POST',
    url: '/replay/batch',
    body: '{"ids": [1,',
    headers: { 'content-type': 'application/json' },
    names: /JSON/,
  },
  'invalid target topic on POST /replay/:id': {
    method: 'POST',
    url: '/replay/1?target_topic=bad%20topic',
    names: /querystring\/target_topic must match pattern/,
  },
  'unknown query parameter on POST /replay/:id': {
    method: 'POST',
    url: '/replay/1?force=true',
    names: /querystring has an unknown field "force"/,
  },
  'empty Idempotency-Key': {
    method: 'POST',
    url: '/replay/EVENT',
    headers: { 'idempotency-key': '' },
    names: /Idempotency-Key must be one header of 1 to 200 characters/,
  },
  'Idempotency-Key of 201 characters': {
    method: 'POST',
    url: '/replay/EVENT',
    headers: { 'idempotency-key': 'k'.repeat(201) },
    names: /Idempotency-Key must be one header of 1 to 200 characters/,
  },
  'Idempotency-Key of 201 characters on /replay/batch': {
    method: 'POST',
    url: '/replay/batch',
    body: { ids: [1] },
    headers: { 'idempotency-key': 'k'.repeat(201) },
    names: /Idempotency-Key/,
  },
  'empty PATCH of the retry schedule': {
    method: 'PATCH',
    url: '/dlq/retry-schedule',
    body: {},
    names: /body must NOT have fewer than 1 properties/,
  },
  'malformed retry interval': {
    method: 'PATCH',
    url: '/dlq/retry-schedule',
    body: { interval: '5 minutes' },
    names: /body\/interval must match pattern/,
  },
  'retry interval under a second': {
    method: 'PATCH',
    url: '/dlq/retry-schedule',
    body: { interval: '500ms' },
    names: /body\/interval must be at least 1s/,
  },
  'wrong type of paused': {
    method: 'PATCH',
    url: '/dlq/retry-schedule',
    body: { paused: 'yes' },
    names: /body\/paused must be boolean/,
  },
  'unknown field on the retry schedule': {
    method: 'PATCH',
    url: '/dlq/retry-schedule',
    body: { cron: '* * * * *' },
    names: /body has an unknown field "cron"/,
  },
  'negative rate on /replays/:id/rate': {
    method: 'POST',
    url: '/replays/replay-range-x/rate',
    body: { max_events_per_second: -1 },
    names: /body\/max_events_per_second/,
  },
};

async function send(app: FastifyInstance, c: BadInput) {
  return app.inject({
    method: c.method,
    url: c.url.replace('EVENT', String(eventId)),
    // What a non-browser client sends with auth off (the browser guard refuses changes without it).
    headers: { 'x-requested-by': 'test', ...c.headers },
    ...(c.body === undefined ? {} : { payload: c.body as string }),
  });
}

describe('bad input', () => {
  it.each(Object.entries(CASES))('%s → 400 naming the problem', async (_name, c) => {
    const res = await send(env.app, c);
    // The payload is part of the comparison so that a failure shows what came back instead.
    expect({ status: res.statusCode, payload: res.payload.slice(0, 300) }).toEqual({
      status: 400,
      payload: expect.stringContaining('"statusCode":400'),
    });
    expect(res.headers['content-type']).toMatch(/application\/json/);
    const body = json<{ statusCode: number; error: string; message: string }>(res);
    expect(body).toEqual({ statusCode: 400, error: 'Bad Request', message: expect.any(String) });
    expect(body.message).toMatch(c.names);
    expect(leaksInternals(res.payload)).toBe(false);
  });

  it('starts nothing and writes nothing for any of them', async () => {
    const started = await env.h.pool.query('SELECT workflow_id, kind, filter FROM replay_audit ORDER BY id');
    expect(started.rows).toEqual([]);
    expect(await env.h.journalCount()).toBe(1);
    expect((await env.h.pool.query('SELECT status, attempts FROM event_dlq')).rows).toEqual([
      { status: 'pending', attempts: 0 },
    ]);
  });

  it('a body that is not JSON is refused, not guessed at', async () => {
    const plain = await env.app.inject({
      method: 'POST',
      url: '/replay/batch',
      headers: { 'content-type': 'text/plain', 'x-requested-by': 'test' },
      payload: 'ids=1',
    });
    expect(plain.statusCode).toBe(415);
    expect(json(plain).message).toMatch(/accepts only application\/json/);
    const form = await env.app.inject({
      method: 'POST',
      url: '/replay/batch',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: 'ids=1',
    });
    expect(form.statusCode).toBe(415);
    expect(json(form)).toMatchObject({ statusCode: 415, error: 'Unsupported Media Type' });
  });

  it('unknown routes answer a JSON 404 naming the route', async () => {
    const res = await env.app.inject({ method: 'POST', url: '/replays' });
    expect(res.statusCode).toBe(404);
    expect(json(res)).toEqual({ statusCode: 404, error: 'Not Found', message: 'Route POST /replays not found' });
  });
});

describe('Temporal unreachable', () => {
  let app: FastifyInstance;

  beforeAll(async () => {
    // Port 1: nothing listens there, so every connection attempt is refused.
    app = await buildTestApp(env.h, {
      ...env.h.config,
      temporal: { ...env.h.config.temporal, address: '127.0.0.1:1' },
    });
  });
  afterAll(async () => {
    await app?.close();
  });

  it('replay routes answer 503 with a clear message, quickly, every time', async () => {
    // A replay of ours (it has an audit row): only Temporal can describe it. An id with no row is a 404 at once.
    await env.h.pool.query(
      `INSERT INTO replay_audit (workflow_id, kind, source) VALUES ('replay-event-1-abc', 'single', 'operator_api')
       ON CONFLICT (workflow_id) DO NOTHING`,
    );
    const routes = [
      { method: 'POST', url: `/replay/${eventId}` },
      { method: 'POST', url: '/replay/batch', body: { ids: [eventId] } },
      { method: 'POST', url: '/replay/range', body: range() },
      { method: 'POST', url: `/dlq/${dlqId}/retry` },
      { method: 'GET', url: '/replays/replay-event-1-abc' },
      { method: 'GET', url: '/dlq/retry-schedule' },
      { method: 'POST', url: '/dlq/retry-schedule/trigger' },
      { method: 'POST', url: `/replay/${eventId}` }, // a second try reconnects rather than hanging on the first failure
    ] as const;
    for (const r of routes) {
      const started = Date.now();
      const res = await app.inject({
        method: r.method,
        url: r.url,
        headers: { 'x-requested-by': 'test' },
        ...('body' in r ? { payload: r.body } : {}),
      });
      expect({ route: `${r.method} ${r.url}`, status: res.statusCode }).toEqual({
        route: `${r.method} ${r.url}`,
        status: 503,
      });
      expect(Date.now() - started).toBeLessThan(10_000);
      const body = json<{ statusCode: number; error: string; message: string }>(res);
      expect(body).toMatchObject({ statusCode: 503, error: 'Service Unavailable' });
      expect(body.message).toMatch(/^Temporal is unreachable at 127\.0\.0\.1:1: replay is unavailable for now/);
      expect(body.message).toMatch(/Ingestion and read routes keep working/);
      expect(leaksInternals(res.payload)).toBe(false);
    }
    // Nothing of it reached a workflow. (Only these two checks: bad inputs that slipped through above may still be
    // auditing batches and ranges of their own.)
    const singles = await env.h.pool.query(
      "SELECT workflow_id FROM replay_audit WHERE kind = 'single' AND event_id = $1",
      [eventId],
    );
    expect(singles.rows).toEqual([]);
    const entry = await env.h.pool.query('SELECT status, attempts FROM event_dlq WHERE id = $1', [dlqId]);
    expect(entry.rows).toEqual([{ status: 'pending', attempts: 0 }]);
  });

  it('read routes and health keep answering', async () => {
    const health = await app.inject({ method: 'GET', url: '/health' });
    expect(health.statusCode).toBe(200);
    expect(json(health)).toMatchObject({ status: 'healthy', checks: { postgres: { status: 'up' } } });
    const latest = await app.inject({ method: 'GET', url: '/events/latest' });
    expect(latest.statusCode).toBe(200);
    expect(json<{ id: number }[]>(latest).map((e) => e.id)).toEqual([eventId]);
    expect((await app.inject({ method: 'GET', url: `/events/${eventId}` })).statusCode).toBe(200);
    expect((await app.inject({ method: 'GET', url: '/events?tenant_id=acme' })).statusCode).toBe(200);
    expect((await app.inject({ method: 'GET', url: '/dlq' })).statusCode).toBe(200);
    expect((await app.inject({ method: 'GET', url: '/replays' })).statusCode).toBe(200);
  });

  it('a replay of an unknown id is still a 404: the journal answers before Temporal is needed', async () => {
    const unknown = await app.inject({ method: 'POST', url: '/replay/999999', headers: { 'x-requested-by': 'test' } });
    expect(unknown.statusCode).toBe(404);
  });
});

import { recordDeliveryAttempt } from '../../repository/notifications';
import { buildTestApp, createApiEnv, json, type ApiEnv } from '../support/api';
import { baseConfig } from '../support/env';

// GET/PUT /notifications and GET /notifications/deliveries on the real Postgres (no worker needed: deliveries are
// written here the way the delivery activity writes them; test/workflows/notifications.test.ts delivers for real).

const MUTATE = { 'x-requested-by': 'test' };
let env: ApiEnv;

beforeAll(async () => {
  env = await createApiEnv('api-notify', {
    worker: false,
    ingest: false,
    env: {
      NOTIFY_SIGNING_SECRET: 'api-test-secret-0123456789',
      NOTIFY_WEBHOOKS: 'replay_failed=https://ops.example.com/hook,*=https://chat.example.com/crm',
      NOTIFY_DLQ_GROWTH_THRESHOLD: '50',
    },
  });
});
afterAll(() => env?.close());

const get = (url: string) => env.app.inject({ method: 'GET', url });
const put = (payload: Record<string, unknown>) =>
  env.app.inject({ method: 'PUT', url: '/notifications', headers: MUTATE, payload });

it('GET /notifications shows the configured URLs per kind, their source and the settings, never the secret', async () => {
  const res = await get('/notifications');
  expect(res.statusCode).toBe(200);
  const body = json(res);
  expect(body).toMatchObject({
    signing_secret_set: true,
    max_attempts: 8,
    backoff_ms: 10_000,
    timeout_ms: 10_000,
    dlq_growth: { threshold: 50, window_seconds: 900, interval_seconds: 60 },
  });
  expect(body.endpoints).toEqual([
    expect.objectContaining({ kind: 'dlq_parked', urls: ['https://chat.example.com/crm'], source: 'config' }),
    expect.objectContaining({ kind: 'dlq_group_growing', urls: ['https://chat.example.com/crm'], source: 'config' }),
    expect.objectContaining({ kind: 'replay_completed', urls: ['https://chat.example.com/crm'], source: 'config' }),
    expect.objectContaining({
      kind: 'replay_failed',
      urls: ['https://ops.example.com/hook', 'https://chat.example.com/crm'],
      source: 'config',
    }),
    expect.objectContaining({ kind: 'erasure_completed', urls: ['https://chat.example.com/crm'], source: 'config' }),
  ]);
  expect(res.payload).not.toContain('api-test-secret');
});

it('PUT /notifications sets the URLs of the kinds given ([] = nowhere), others keep theirs; bad input is a 400', async () => {
  const res = await put({
    endpoints: {
      dlq_parked: ['https://pager.example.com/a', 'https://pager.example.com/a', 'http://10.0.0.5:8080/hook'],
      erasure_completed: [],
    },
  });
  expect(res.statusCode).toBe(200);
  const byKind = Object.fromEntries(
    (json(res).endpoints as { kind: string; urls: string[]; source: string; updated_by: string | null }[]).map((e) => [
      e.kind,
      e,
    ]),
  );
  expect(byKind.dlq_parked).toMatchObject({
    urls: ['https://pager.example.com/a', 'http://10.0.0.5:8080/hook'],
    source: 'api',
    updated_by: 'anonymous',
  });
  expect(byKind.erasure_completed).toMatchObject({ urls: [], source: 'api' });
  expect(byKind.replay_failed).toMatchObject({ source: 'config' });
  expect(json(await get('/notifications')).endpoints).toEqual(json(res).endpoints);

  for (const [payload, message] of [
    [{ endpoints: { dlq_parked: ['ftp://files.example.com/x'] } }, /not an http\(s\) URL/],
    [{ endpoints: { dlq_parked: ['https://user:pw@example.com/x'] } }, /not an http\(s\) URL/],
    [{ endpoints: { dlq_parked: ['not a url'] } }, /not an http\(s\) URL/],
    [{ endpoints: { lead_created: ['https://example.com/x'] } }, /unknown field "lead_created"/],
    [{ endpoints: {} }, /fewer than 1/],
    [{ endpoints: { dlq_parked: Array.from({ length: 11 }, (_, i) => `https://e.example.com/${i}`) } }, /more than 10/],
    [{ endpoints: { dlq_parked: ['https://example.com/\u0000'] } }, /pattern/],
  ] as const) {
    const bad = await put(payload);
    expect({ payload, status: bad.statusCode }).toEqual({ payload, status: 400 });
    expect(json(bad).message).toMatch(message);
  }
});

it('PUT /notifications is refused while NOTIFY_SIGNING_SECRET is not set (nothing would be signed)', async () => {
  const app = await buildTestApp(env.h, baseConfig({ DATABASE_URL: env.h.config.databaseUrl }));
  try {
    const res = await app.inject({
      method: 'PUT',
      url: '/notifications',
      headers: MUTATE,
      payload: { endpoints: { dlq_parked: ['https://pager.example.com/b'] } },
    });
    expect(res.statusCode).toBe(400);
    expect(json(res).message).toMatch(/NOTIFY_SIGNING_SECRET/);
    expect(json(await app.inject({ method: 'GET', url: '/notifications' })).signing_secret_set).toBe(false);
  } finally {
    await app.close();
  }
});

it('GET /notifications/deliveries lists attempts newest first, filtered, in pages', async () => {
  const attempt = (deliveryId: string, n: number, status: 'delivered' | 'failed' | 'abandoned', http: number | null) =>
    recordDeliveryAttempt(env.h.pool, {
      deliveryId,
      kind: deliveryId.includes('parked') ? 'dlq_parked' : 'replay_completed',
      url: 'https://pager.example.com/a',
      attempt: n,
      status,
      httpStatus: http,
      error: status === 'delivered' ? null : http ? `HTTP ${http}` : 'ECONNREFUSED',
    });
  await attempt('notify-replay_completed-r1-aa', 1, 'failed', 503);
  await attempt('notify-replay_completed-r1-aa', 2, 'delivered', 200);
  await attempt('notify-dlq_parked-7-1-aa', 1, 'failed', null);
  await attempt('notify-dlq_parked-7-1-aa', 2, 'abandoned', null);

  const all = json(await get('/notifications/deliveries'));
  expect(all.next_before).toBeNull();
  expect(
    (all.deliveries as { delivery_id: string; attempt: number; status: string }[]).map((d) => [
      d.delivery_id,
      d.attempt,
      d.status,
    ]),
  ).toEqual([
    ['notify-dlq_parked-7-1-aa', 2, 'abandoned'],
    ['notify-dlq_parked-7-1-aa', 1, 'failed'],
    ['notify-replay_completed-r1-aa', 2, 'delivered'],
    ['notify-replay_completed-r1-aa', 1, 'failed'],
  ]);
  expect((all.deliveries as unknown[])[3]).toMatchObject({
    kind: 'replay_completed',
    http_status: 503,
    error: 'HTTP 503',
  });

  const abandoned = json(await get('/notifications/deliveries?status=abandoned'));
  expect(abandoned.deliveries).toEqual([
    expect.objectContaining({ kind: 'dlq_parked', attempt: 2, http_status: null, error: 'ECONNREFUSED' }),
  ]);
  const byKind = json(await get('/notifications/deliveries?kind=replay_completed&limit=1'));
  expect(byKind.deliveries).toEqual([expect.objectContaining({ attempt: 2, status: 'delivered' })]);
  const next = json(await get(`/notifications/deliveries?kind=replay_completed&limit=1&before=${byKind.next_before}`));
  expect(next.deliveries).toEqual([expect.objectContaining({ attempt: 1, status: 'failed' })]);
  const one = json(await get('/notifications/deliveries?delivery_id=notify-dlq_parked-7-1-aa'));
  expect(one.deliveries).toHaveLength(2);

  for (const query of ['kind=lead_created', 'status=ok', 'limit=0', 'before=-1', 'color=red']) {
    expect({ query, status: (await get(`/notifications/deliveries?${query}`)).statusCode }).toEqual({
      query,
      status: 400,
    });
  }
});

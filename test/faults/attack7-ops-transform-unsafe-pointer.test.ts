import { createApiEnv, bearer, json, publishedBy, type ApiEnv } from '../support/api';
import { journalPayloads } from '../support/payloads';
import { signToken } from '../support/tokens';

/**
 * A replay transform walks its pointers with rfc6902, which skips the tokens __proto__, constructor and prototype: a
 * pointer through one names its parent instead. So "/__proto__/_repaired_from_dlq_id" writes the lineage field
 * _repaired_from_dlq_id itself, and "move from /constructor" moves the payload into itself. Such pointers are refused
 * at the API (as a repair's are); and a patch the library throws on for one payload (an append "/-" to a string) is
 * that event's refusal, not a crash of the replay.
 */
const SECRET = 'attack7-ops-transform-secret-0123456789';
let env: ApiEnv;
let ids: number[];
const tenant = 'a7-tenant';
const headers = bearer(
  signToken({ sub: 'a7-operator', role: 'operator', exp: Math.floor(Date.now() / 1000) + 600 }, SECRET),
);

beforeAll(async () => {
  env = await createApiEnv('a7opstransform', {
    ingest: false,
    env: { AUTH_JWT_SECRET: SECRET, API_REPLAY_RATE_LIMIT_PER_MINUTE: '10000' },
  });
  ids = await journalPayloads(env.h.pool, tenant, env.h.topics.leads, [
    { tenant_id: tenant, source: 'web', lead_id: 1 },
    { tenant_id: tenant, source: ['fair'], lead_id: 2 },
  ]);
});
afterAll(() => env?.close());

const window = { start: '2000-01-01T00:00:00Z', end: '2100-01-01T00:00:00Z', tenant_id: tenant };
const post = (url: string, payload?: Record<string, unknown>) =>
  env.app.inject({ method: 'POST', url, headers, ...(payload ? { payload } : {}) });

describe('a transform pointer through __proto__, constructor or prototype is refused by every replay route', () => {
  it.each([
    [{ op: 'add', path: '/__proto__/_repaired_from_dlq_id', value: 999 }],
    [{ op: 'add', path: '/constructor/_repair_id', value: 'forged' }],
    [{ op: 'move', from: '/constructor', path: '/x' }],
    [{ op: 'copy', from: '/prototype', path: '/x' }],
    [{ op: 'remove', path: '/a/__proto__' }],
  ])('%j', async (operation) => {
    for (const [url, body] of [
      ['/replay/range', { ...window, dry_run: true, transform: [operation] }],
      ['/replay/batch', { ids, transform: [operation] }],
      [`/replay/${ids[0]}`, { transform: [operation] }],
    ] as const) {
      const res = await post(url, body);
      expect({ url, status: res.statusCode }).toEqual({ url, status: 400 });
      expect(json<{ message: string }>(res).message).toMatch(/goes through (__proto__|constructor|prototype)/);
    }
  });
});

it('a patch the library throws on for one payload is that event refused, with the others replayed', async () => {
  const append = [{ op: 'add', path: '/source/-', value: 'late' }];
  const res = await post('/replay/range', { ...window, dry_run: true, transform: append });
  expect(res.statusCode).toBe(200);
  const { sample } = json<{ sample: Array<{ id: number; transformed?: object; transform_error?: string }> }>(res);
  expect(sample).toEqual([
    expect.objectContaining({ id: ids[0], transform_error: expect.stringMatching(/operation 0 \(add \/source\/-\)/) }),
    expect.objectContaining({ id: ids[1], transformed: expect.objectContaining({ source: ['fair', 'late'] }) }),
  ]);

  const refused = await post(`/replay/${ids[0]}`, { transform: append });
  expect(refused.statusCode).toBe(422);
  expect(json<{ message: string }>(refused).message).toMatch(/operation 0 \(add \/source\/-\)/);
  const ok = await post(`/replay/${ids[1]}`, { transform: append });
  expect(ok.statusCode).toBe(200);
  const [sent] = await publishedBy(env.h, env.h.topics.leads, json<{ workflow_id: string }>(ok).workflow_id);
  expect(sent).toMatchObject({ source: ['fair', 'late'], _replayed_from_event_id: ids[1] });
}, 60_000);

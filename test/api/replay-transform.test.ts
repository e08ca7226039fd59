import { createApiEnv, bearer, json, publishedBy, type ApiEnv } from '../support/api';
import { journalPayloads } from '../support/payloads';
import { signToken } from '../support/tokens';

/**
 * The `transform` (JSON Patch) and `ordering` fields of the replay routes: checked at the API with a 400 naming the
 * problem before any workflow starts, previewed by a range dry run, applied by a single replay (422 when it cannot
 * apply), and recorded in the audit row.
 */
const SECRET = 'replay-transform-test-secret-0123456789';
let env: ApiEnv;
let ids: number[];
const tenant = 'rt-tenant';
const headers = bearer(
  signToken({ sub: 'rt-operator', role: 'operator', exp: Math.floor(Date.now() / 1000) + 600 }, SECRET),
);
const RENAME = [
  { op: 'move', from: '/source', path: '/origin' },
  { op: 'add', path: '/consumer', value: 'billing' },
];

beforeAll(async () => {
  env = await createApiEnv('replaytransform', {
    ingest: false,
    env: { AUTH_JWT_SECRET: SECRET, API_REPLAY_RATE_LIMIT_PER_MINUTE: '10000' },
  });
  ids = await journalPayloads(env.h.pool, tenant, env.h.topics.leads, [
    { tenant_id: tenant, source: 'web', lead_id: 1 },
    { tenant_id: tenant, lead_id: 2 },
    { tenant_id: tenant, source: 'trade-show', lead_id: 3 },
  ]);
});
afterAll(() => env?.close());

const window = { start: '2000-01-01T00:00:00Z', end: '2100-01-01T00:00:00Z', tenant_id: tenant };
const post = (url: string, payload?: Record<string, unknown>) =>
  env.app.inject({ method: 'POST', url, headers, ...(payload ? { payload } : {}) });
const audit = async (workflowId: string) =>
  (await env.h.pool.query('SELECT filter FROM replay_audit WHERE workflow_id = $1', [workflowId])).rows[0]?.filter;

describe('a transform the API refuses, naming the problem', () => {
  it.each([
    [
      [{ op: 'add', path: '/_replay_id', value: 'x' }],
      /operation 0 \(add\) path "\/_replay_id" names the lineage field _replay_id/,
    ],
    [[{ op: 'move', from: '/_replay_count', path: '/n' }], /from "\/_replay_count" names the lineage field/],
    [[{ op: 'replace', path: '', value: {} }], /names the whole payload/],
    [[{ op: 'add', path: 'source', value: 1 }], /is not a JSON Pointer/],
    [[{ op: 'add', path: '/x' }], /body\/transform\/0: a "add" operation needs "value"/],
    [[{ op: 'copy', path: '/x' }], /body\/transform\/0: a "copy" operation needs "from"/],
    [[{ op: 'rename', path: '/x' }], /body\/transform\/0\/op must be one of "add", "remove"/],
    [[{ op: 'add', path: '/x', value: 1, extra: true }], /body\/transform\/0 has an unknown field "extra"/],
    [[], /body\/transform must NOT have fewer than 1 items/],
  ])('%j', async (transform, problem) => {
    for (const [url, body] of [
      ['/replay/range', { ...window, dry_run: true, transform }],
      ['/replay/batch', { ids, transform }],
      [`/replay/${ids[0]}`, { transform }],
    ] as const) {
      const res = await post(url, body);
      expect({ url, status: res.statusCode }).toEqual({ url, status: 400 });
      expect(json<{ message: string }>(res).message).toMatch(problem);
    }
  });

  it('an ordering that is not one of page, per_key', async () => {
    const res = await post('/replay/batch', { ids, ordering: 'strict' });
    expect(res.statusCode).toBe(400);
    expect(json<{ message: string }>(res).message).toMatch(/body\/ordering must be one of "page", "per_key"/);
  });
});

it('a range dry run previews the transform on its sample, and the audit row records it', async () => {
  const res = await post('/replay/range', { ...window, dry_run: true, transform: RENAME, ordering: 'per_key' });
  expect(res.statusCode).toBe(200);
  const body = json<{
    workflow_id: string;
    transform: { id: string; patch: unknown };
    sample: Array<{ id: number; payload: object; transformed?: object; transform_error?: string }>;
  }>(res);
  expect(body.transform).toEqual({ id: expect.stringMatching(/^jp-[0-9a-f]{16}$/), patch: RENAME });
  expect(body.sample).toEqual([
    expect.objectContaining({
      id: ids[0],
      payload: { tenant_id: tenant, source: 'web', lead_id: 1 },
      transformed: { tenant_id: tenant, origin: 'web', lead_id: 1, consumer: 'billing' },
    }),
    expect.objectContaining({
      id: ids[1],
      payload: { tenant_id: tenant, lead_id: 2 },
      transform_error: expect.stringMatching(/operation 0 \(move \/origin\) failed/),
    }),
    expect.objectContaining({ id: ids[2], transformed: expect.objectContaining({ origin: 'trade-show' }) }),
  ]);
  expect(await audit(body.workflow_id)).toMatchObject({ transform: body.transform, ordering: 'per_key' });
});

it('a single replay sends the patched payload; one the patch cannot apply to is a 422 naming why', async () => {
  const topic = env.h.topics.leads; // back to its own topic (ingest is off here: nothing journals it again)
  const ok = await post(`/replay/${ids[0]}`, { transform: RENAME });
  expect(ok.statusCode).toBe(200);
  const { workflow_id } = json<{ workflow_id: string }>(ok);
  const [sent] = await publishedBy(env.h, topic, workflow_id);
  expect(sent).toMatchObject({ origin: 'web', consumer: 'billing', _replayed_from_event_id: ids[0] });
  expect(sent).not.toHaveProperty('source');
  expect(sent._replay_transform).toEqual((await audit(workflow_id)).transform.id);

  const refused = await post(`/replay/${ids[1]}`, { transform: RENAME });
  expect(refused.statusCode).toBe(422);
  expect(json<{ message: string }>(refused).message).toMatch(
    new RegExp(`^Event ${ids[1]}: transform jp-\\w+: operation 0 \\(move /origin\\) failed`),
  );
  const plain = await post(`/replay/${ids[2]}`);
  expect(plain.statusCode).toBe(200); // no body at all, as before transforms
});

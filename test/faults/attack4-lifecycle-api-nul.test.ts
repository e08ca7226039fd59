import { createApiEnv, json, type ApiEnv } from '../support/api';

/**
 * The lifecycle API must answer invalid input with a 4xx naming the problem, never a 5xx. A NUL character is valid
 * JSON and valid in a URL (%00), but Postgres text cannot hold it: passed through to a query, it fails there.
 */
let env: ApiEnv;
beforeAll(async () => {
  env = await createApiEnv('attack4-api-nul', { worker: false, ingest: false });
});
afterAll(() => env?.close());

const post = (body: unknown) =>
  env.app.inject({ method: 'POST', url: '/erasure', headers: { 'x-requested-by': 'test' }, payload: body as object });

it.each([
  ['a subject value', { subject: { field: 'email', value: 'ann\u0000@example.com' }, dry_run: false }],
  ['a tenant id', { tenant_id: 'ac\u0000me', dry_run: false }],
])('POST /erasure with a NUL in %s answers 4xx, not 5xx', async (_what, body) => {
  const res = await post(body);
  expect({ status: res.statusCode >= 400 && res.statusCode < 500 ? '4xx' : res.statusCode, body: json(res) }).toEqual({
    status: '4xx',
    body: expect.objectContaining({ message: expect.any(String) }),
  });
});

it('GET /erasure/:id with a NUL in the id answers 4xx, not 5xx', async () => {
  const res = await env.app.inject({ method: 'GET', url: '/erasure/abc%00def' });
  expect(res.statusCode >= 400 && res.statusCode < 500 ? '4xx' : res.statusCode).toBe('4xx');
});

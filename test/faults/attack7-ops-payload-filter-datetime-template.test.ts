import { createApiEnv, bearer, json, type ApiEnv } from '../support/api';
import { journalPayloads } from '../support/payloads';
import { signToken } from '../support/tokens';

/**
 * A payload filter is checked by evaluating it on `{}`, where `$.signed_up.datetime("XX")` reaches no value; but
 * Postgres parses a datetime template only when a string reaches it, and a template it cannot parse is an error even
 * in the silent mode of `@@`. Such a filter passed the check and then failed on every stored payload holding the
 * field: a 500 from /events, a cut export, a range dry run retried without end. It is a 400 naming the template.
 */
const SECRET = 'attack7-ops-payload-filter-secret-0123456789';
let env: ApiEnv;
const tenant = 'a7-pf-tenant';
const headers = bearer(
  signToken({ sub: 'a7-operator', role: 'operator', exp: Math.floor(Date.now() / 1000) + 600 }, SECRET),
);

beforeAll(async () => {
  env = await createApiEnv('a7opspfdatetime', {
    ingest: false,
    env: { AUTH_JWT_SECRET: SECRET, API_REPLAY_RATE_LIMIT_PER_MINUTE: '10000' },
  });
  await journalPayloads(env.h.pool, tenant, env.h.topics.leads, [
    { tenant_id: tenant, signed_up: '2026-01-02', lead_id: 1 },
  ]);
});
afterAll(() => env?.close());

const BAD_TEMPLATES = [
  '$.signed_up.datetime("XX") < "2026-02-01".datetime()',
  '$.signed_up . datetime ( "YYYY-MM-DD" ) < "2026-02-01".datetime("XX")',
  '$.lead_id == 1 && $.signed_up.datetime("DD/MM/YYYY TZH:TZM XX") == "x"',
];

it.each(BAD_TEMPLATES)(
  '%s is a 400 naming the template on /events, its export and a range dry run',
  async (filter) => {
    const query = new URLSearchParams({ tenant_id: tenant, payload_filter: filter });
    for (const url of [`/events?${query}`, `/events/export?${query}`]) {
      const res = await env.app.inject({ method: 'GET', url, headers });
      expect({ url, status: res.statusCode }).toEqual({ url, status: 400 });
      expect(json<{ message: string }>(res).message).toMatch(
        /payload_filter is not a valid JSONPath predicate: .*datetime/,
      );
    }
    const res = await env.app.inject({
      method: 'POST',
      url: '/replay/range',
      headers,
      payload: {
        start: '2000-01-01T00:00:00Z',
        end: '2100-01-01T00:00:00Z',
        tenant_id: tenant,
        dry_run: true,
        payload_filter: filter,
      },
    });
    expect(res.statusCode).toBe(400);
    expect(json<{ message: string }>(res).message).toMatch(/body\/payload_filter is not a valid JSONPath predicate/);
  },
  60_000,
);

it.each([
  ['$.signed_up.datetime("YYYY-MM-DD") < "2026-02-01".datetime("YYYY-MM-DD")', 1],
  ['$."x.datetime(\\"XX\\")" == ".datetime(\\"XX\\")" || $.lead_id == 2', 0],
])('%s is a filter (a template only in a key or a string is text)', async (filter, count) => {
  const query = new URLSearchParams({ tenant_id: tenant, payload_filter: filter });
  const res = await env.app.inject({ method: 'GET', url: `/events?${query}`, headers });
  expect(res.statusCode).toBe(200);
  expect(json<{ items: unknown[] }>(res).items).toHaveLength(count);
});

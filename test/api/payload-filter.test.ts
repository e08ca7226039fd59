import { createApiEnv, bearer, json, type ApiEnv } from '../support/api';
import { journalPayloads } from '../support/payloads';
import { signToken } from '../support/tokens';

/**
 * Payload filters (JSONPath predicates evaluated by Postgres) on GET /events and range dry runs: validated by
 * Postgres at the API, always a bind parameter, correct on numbers, strings, nested fields and arrays.
 */
const SECRET = 'payload-filter-test-secret-0123456789';
let env: ApiEnv;
let ids: number[];
const tenant = 'pf-tenant';
const token = (role: string, claims: Record<string, unknown> = {}) =>
  bearer(signToken({ sub: `pf-${role}`, role, exp: Math.floor(Date.now() / 1000) + 600, ...claims }, SECRET));

const payloads: Record<string, unknown>[] = [
  { source: 'trade-show', lead_id: 150, contact: { country: 'DE' } }, // 0
  { source: 'trade-show', lead_id: 250, contact: { country: 'FR' } }, // 1
  { source: 'web', lead_id: 300, contact: { country: 'DE' } }, // 2
  { source: 'trade-show', lead_id: '999' }, // 3: a string, never > 200
  { source: 'trade-show', lead_id: 200.5, tags: ['vip', 'eu'] }, // 4
  { source: 'Trade-Show', lead_id: 500 }, // 5: another spelling
  { lead_id: 700 }, // 6: no source at all
  ...Array.from({ length: 14 }, (_, i) => ({ source: 'trade-show', lead_id: 1000 + i, batch: 'bulk' })), // 7..20
];
const at = (...indexes: number[]) => indexes.map((i) => ids[i]);
const between = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => ids[from + i]);

beforeAll(async () => {
  env = await createApiEnv('payloadfilter', { ingest: false, env: { AUTH_JWT_SECRET: SECRET } });
  ids = await journalPayloads(env.h.pool, tenant, env.h.topics.leads, payloads);
  // Another tenant's row that matches every filter below but must never show.
  await journalPayloads(env.h.pool, 'pf-other', env.h.topics.leads, [
    { source: 'trade-show', lead_id: 9999, contact: { country: 'DE' }, tags: ['vip'] },
  ]);
});
afterAll(() => env?.close());

const listIds = async (filter: string, headers = token('viewer')) => {
  const res = await env.app.inject({
    method: 'GET',
    url: `/events?${new URLSearchParams({ tenant_id: tenant, payload_filter: filter, limit: '1000' })}`,
    headers,
  });
  expect(res.statusCode).toBe(200);
  return json<{ items: { id: number }[] }>(res)
    .items.map((r) => r.id)
    .sort((a, b) => a - b);
};

describe('GET /events?payload_filter', () => {
  it('compares numbers as numbers and strings exactly: a string "999" is not > 200, "Trade-Show" is not "trade-show"', async () => {
    expect(await listIds('$.source == "trade-show" && $.lead_id > 200')).toEqual([...at(1, 4), ...between(7, 20)]);
    expect(await listIds('$.lead_id == "999"')).toEqual(at(3));
    expect(await listIds('$.source starts with "Trade"')).toEqual(at(5));
  });

  it('filters on nested fields, arrays, absent fields and regular expressions', async () => {
    expect(await listIds('$.contact.country == "DE"')).toEqual(at(0, 2));
    expect(await listIds('$.tags[*] == "vip"')).toEqual(at(4));
    expect(await listIds('!exists($.source)')).toEqual(at(6));
    expect(await listIds('$.source like_regex "^trade" flag "i" && $.lead_id < 300')).toEqual(at(0, 1, 4));
  });

  it('pages a filtered listing with the keyset cursor like an unfiltered one', async () => {
    const filter = '$.batch == "bulk"';
    const query = (cursor?: number) =>
      new URLSearchParams({
        tenant_id: tenant,
        payload_filter: filter,
        limit: '10',
        ...(cursor ? { cursor: String(cursor) } : {}),
      });
    const first = json<{ items: { id: number }[]; next_cursor: number }>(
      await env.app.inject({ method: 'GET', url: `/events?${query()}`, headers: token('viewer') }),
    );
    const second = json<{ items: { id: number }[]; next_cursor: number | null }>(
      await env.app.inject({ method: 'GET', url: `/events?${query(first.next_cursor)}`, headers: token('viewer') }),
    );
    expect([...first.items, ...second.items].map((r) => r.id)).toEqual(between(7, 20).reverse());
    expect(second.next_cursor).toBeNull();
  });

  it("a tenant-scoped token sees only its tenant's matches", async () => {
    const scoped = token('viewer', { tenant_id: 'pf-other' });
    const res = await env.app.inject({
      method: 'GET',
      url: `/events?${new URLSearchParams({ payload_filter: '$.tags[*] == "vip"' })}`,
      headers: scoped,
    });
    expect(json<{ items: { tenant_id: string }[] }>(res).items.map((r) => r.tenant_id)).toEqual(['pf-other']);
  });

  it.each([
    ['$.source ==', /syntax error at end of jsonpath input/],
    ['$.source = "web"', /syntax error/],
    ['$.lead_id', /single boolean result is expected/],
    ['$.x like_regex "("', /invalid regular expression/],
    ['$who == 1', /could not find jsonpath variable "who"/],
  ])('refuses %j with a 400 naming the problem in Postgres’ words', async (filter, problem) => {
    const res = await env.app.inject({
      method: 'GET',
      url: `/events?${new URLSearchParams({ payload_filter: filter })}`,
      headers: token('viewer'),
    });
    expect(res.statusCode).toBe(400);
    const { message } = json<{ message: string }>(res);
    expect(message).toMatch(/^querystring\/payload_filter is not a valid JSONPath predicate: /);
    expect(message).toMatch(problem);
    expect(message).toContain(JSON.stringify(filter));
  });

  it('is inert to SQL-injection-looking input: a syntax error, or a string literal that matches nothing', async () => {
    const count = async () => Number((await env.h.pool.query('SELECT count(*) FROM event_journal')).rows[0].count);
    const before = await count();
    const refused = await env.app.inject({
      method: 'GET',
      url: `/events?${new URLSearchParams({ payload_filter: "'; DROP TABLE event_journal; --" })}`,
      headers: token('viewer'),
    });
    expect(refused.statusCode).toBe(400);
    expect(json<{ message: string }>(refused).message).toMatch(/syntax error/);
    expect(await listIds(`$.source == "x'); DELETE FROM event_journal; --"`)).toEqual([]);
    // A JSONPath tautology is just a predicate true for every payload: the other filters (tenant) still hold.
    expect(await listIds(`$.source == "trade-show" || "1" == "1"`)).toEqual(ids);
    expect(await count()).toBe(before);
  });
});

describe('POST /replay/range with payload_filter', () => {
  const range = (extra: Record<string, unknown>) =>
    env.app.inject({
      method: 'POST',
      url: '/replay/range',
      headers: token('operator'),
      payload: {
        start: '2000-01-01T00:00:00Z',
        end: '2100-01-01T00:00:00Z',
        tenant_id: tenant,
        ...extra,
      },
    });

  it('dry run answers the count of matches and the first 10 of them in id order, with their payloads', async () => {
    const res = await range({ payload_filter: '$.source == "trade-show" && $.lead_id > 200', dry_run: true });
    expect(res.statusCode).toBe(200);
    const body = json<{ matched: number; by_tenant: object; sample: { id: number; payload: object }[] }>(res);
    expect(body).toMatchObject({ status: 'dry_run', matched: 16, by_tenant: { [tenant]: 16 } });
    const expected = [...at(1, 4), ...between(7, 14)];
    expect(body.sample.map((r) => r.id)).toEqual(expected);
    expect(body.sample.map((r) => r.payload)).toEqual(expected.map((id) => payloads[ids.indexOf(id)]));
  });

  it('records the filter in the audit row', async () => {
    const res = await range({ payload_filter: '$.contact.country == "DE"', dry_run: true });
    const { workflow_id, matched } = json<{ workflow_id: string; matched: number }>(res);
    expect(matched).toBe(2);
    const { rows } = await env.h.pool.query('SELECT filter FROM replay_audit WHERE workflow_id = $1', [workflow_id]);
    expect(rows[0].filter).toMatchObject({ payloadFilter: '$.contact.country == "DE"' });
  });

  it('refuses an invalid filter with a 400 before any workflow starts', async () => {
    const res = await range({ payload_filter: '$.lead_id >', dry_run: true });
    expect(res.statusCode).toBe(400);
    expect(json<{ message: string }>(res).message).toMatch(
      /^body\/payload_filter is not a valid JSONPath predicate: syntax error/,
    );
  });
});

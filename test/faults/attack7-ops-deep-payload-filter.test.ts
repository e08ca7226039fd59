import { createApiEnv, bearer, json, type ApiEnv } from '../support/api';
import { eventually } from '../support/sink';
import { signToken } from '../support/tokens';

/**
 * A payload Postgres stores but cannot walk: nested 11,000 levels deep (66 KB, under the size limit), it is journaled,
 * and afterwards any payload filter over every level (`$.**`) hit Postgres's stack limit (SQLSTATE 54001) and
 * /events answered 500. The request is valid and a narrower filter works: a 422 naming the limit.
 */
const SECRET = 'attack7-ops-deep-payload-secret-0123456789';
let env: ApiEnv;
const tenant = 'a7-deep-tenant';
const headers = bearer(
  signToken({ sub: 'a7-operator', role: 'operator', exp: Math.floor(Date.now() / 1000) + 600 }, SECRET),
);
const DEPTH = 11_000;

beforeAll(async () => {
  env = await createApiEnv('a7opsdeep', { ingest: false, env: { AUTH_JWT_SECRET: SECRET } });
  const deep = `{"tenant_id":"${tenant}","lead_id":7,"deep":${'{"a":'.repeat(DEPTH)}1${'}'.repeat(DEPTH)}}`;
  await env.h.pool.query(
    `INSERT INTO event_journal (tenant_id, topic, payload, received_at) VALUES ($1, $2, $3::jsonb, now())`,
    [tenant, env.h.topics.leads, deep],
  );
});
afterAll(() => env?.close());

const events = (filter: string) =>
  env.app.inject({
    method: 'GET',
    url: `/events?${new URLSearchParams({ tenant_id: tenant, payload_filter: filter })}`,
    headers,
  });

it.each(['$.** == 1', 'exists($.** ? (@ == "x"))'])(
  '%s over a too-deep payload is a 422 naming the limit',
  async (f) => {
    const res = await events(f);
    expect(res.statusCode).toBe(422);
    expect(json<{ message: string }>(res).message).toMatch(/stack depth limit exceeded \(SQLSTATE 54001\); narrow it/);
  },
);

it('a filter on named paths still finds the same event', async () => {
  const res = await events('$.lead_id == 7');
  expect(res.statusCode).toBe(200);
  expect(json<{ items: { tenant_id: string }[] }>(res).items).toEqual([expect.objectContaining({ tenant_id: tenant })]);
});

describe('a range replay with such a filter, run by the replay worker', () => {
  const range = (body: Record<string, unknown>) =>
    env.app.inject({
      method: 'POST',
      url: '/replay/range',
      headers: { ...headers, 'x-requested-by': 'test' },
      payload: {
        start: '2000-01-01T00:00:00Z',
        end: '2100-01-01T00:00:00Z',
        tenant_id: tenant,
        topic: env.h.topics.leads,
        payload_filter: 'exists($.** ? (@ == "x"))',
        ...body,
      },
    });

  // Before, the activity counting the range was retried with backoff for ever: the dry run never answered, and the
  // replay never ended.
  it('as a dry run answers 422 naming the SQLSTATE', async () => {
    const res = await range({ dry_run: true });
    expect(res.statusCode).toBe(422);
    expect(json<{ message: string }>(res).message).toMatch(/stack depth limit exceeded \(SQLSTATE 54001/);
  });

  it('fails, and GET /replays/:id shows the failure and why', async () => {
    const res = await range({});
    expect(res.statusCode).toBe(202);
    const { workflow_id } = json<{ workflow_id: string }>(res);
    const detail = await eventually(async () => {
      const body = json<{ workflow_status: string; audit: { status: string; error: string | null } }>(
        await env.app.inject({ method: 'GET', url: `/replays/${workflow_id}`, headers }),
      );
      return body.workflow_status === 'RUNNING' ? undefined : body;
    }, `${workflow_id} to end`);
    expect(detail).toMatchObject({
      workflow_status: 'FAILED',
      audit: { status: 'failed', error: expect.stringMatching(/stack depth limit exceeded \(SQLSTATE 54001/) },
    });
  });
});

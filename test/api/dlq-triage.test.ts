import type { Role } from '../../api/auth/principal';
import { createApiEnv, json, type ApiEnv } from '../support/api';
import { seedDeadLetters } from '../support/dlq';
import { eventually } from '../support/sink';
import { signToken } from '../support/tokens';

/** Issue 13, point 1: DLQ groups, the error_class filter and bulk actions through the API, with a real worker. */
const SECRET = 'dlq-triage-test-secret-0123456789';
let env: ApiEnv;
let serial = 0;
let seeded: Record<'acme' | 'globex' | 'jobs', Awaited<ReturnType<typeof seedDeadLetters>>>;
const CHECK = 'db_error:check_violation:bar_block';

function token(role: Role, claims: Record<string, unknown> = {}): string {
  return signToken({ sub: `${role}-${++serial}`, role, exp: Math.floor(Date.now() / 1000) + 600, ...claims }, SECRET);
}
const as = (tok: string) => ({ authorization: `Bearer ${tok}` });
const get = (url: string, tok: string) => env.app.inject({ method: 'GET', url, headers: as(tok) });
const bulk = (payload: object, tok: string) =>
  env.app.inject({ method: 'POST', url: '/dlq/bulk', headers: as(tok), payload });

beforeAll(async () => {
  env = await createApiEnv('dlq-triage', { env: { AUTH_JWT_SECRET: SECRET }, ingest: false });
  const { leads, jobs } = env.h.topics;
  seeded = {
    acme: await seedDeadLetters(env.h.pool, leads, { fixable: 4, tenant: 'acme' }),
    globex: await seedDeadLetters(env.h.pool, leads, { fixable: 3, tenant: 'globex' }),
    jobs: await seedDeadLetters(env.h.pool, jobs, { noTenant: 2, badJson: 2, tenant: 'acme' }),
  };
});
afterAll(() => env?.close());

const today = () => new Date().toISOString().slice(0, 10);
const statuses = async (ids: number[]) =>
  (await env.h.pool.query('SELECT status FROM event_dlq WHERE id = ANY($1) ORDER BY id', [ids])).rows.map(
    (r) => r.status,
  );

/** Follows a bulk action on GET /replays/:id until it completes; its detail. */
async function finished(workflowId: string, tok: string) {
  let detail: Record<string, unknown> = {};
  await eventually(async () => {
    const res = await get(`/replays/${workflowId}`, tok);
    detail = json(res);
    return res.statusCode === 200 && detail.workflow_status === 'COMPLETED';
  }, `bulk action ${workflowId} completed`);
  return detail;
}

it('groups dead letters by error class, topic and day, with counts, oldest/newest and sample ids', async () => {
  const res = await get('/dlq/groups', token('viewer'));
  expect(res.statusCode).toBe(200);
  const groups = json<Record<string, unknown>[]>(res);
  const { leads, jobs } = env.h.topics;
  const byKey = Object.fromEntries(groups.map((g) => [`${g.error_class}|${g.topic}`, g]));
  expect(Object.keys(byKey).sort()).toEqual([`${CHECK}|${leads}`, `invalid_json|${jobs}`, `missing_tenant|${jobs}`]);
  const check = byKey[`${CHECK}|${leads}`];
  expect(check).toMatchObject({
    day: today(),
    count: 7,
    by_status: { pending: 7, retrying: 0, resolved: 0, parked: 0, discarded: 0 },
  });
  const all = [...seeded.acme.fixable, ...seeded.globex.fixable].sort((a, b) => b - a);
  expect(check.sample_ids).toEqual(all.slice(0, 5));
  expect(Date.parse(check.oldest as string)).toBeLessThanOrEqual(Date.parse(check.newest as string));
  // Largest group first.
  expect(groups[0]).toBe(check);

  // A tenant-scoped token sees its tenant's groups only, and may not ask for another's.
  const acme = json<Record<string, unknown>[]>(await get('/dlq/groups', token('viewer', { tenant_id: 'acme' })));
  expect(acme.map((g) => [g.error_class, g.count]).sort()).toEqual([
    [CHECK, 4],
    ['invalid_json', 2],
  ]);
  expect((await get('/dlq/groups?tenant_id=globex', token('viewer', { tenant_id: 'acme' }))).statusCode).toBe(403);
});

it('GET /dlq filters by error_class and day, and shows the class of each entry', async () => {
  const res = await get(`/dlq?error_class=invalid_json&day=${today()}`, token('viewer'));
  const items = json<Record<string, unknown>[]>(res);
  expect(items.map((i) => i.id)).toEqual([...seeded.jobs.badJson].reverse());
  expect(items.every((i) => i.error_class === 'invalid_json')).toBe(true);
  expect(json<unknown[]>(await get('/dlq?error_class=invalid_json&day=2020-01-01', token('viewer')))).toEqual([]);
  for (const day of ['0000-01-01', '2026-02-30', 'today']) {
    expect((await get(`/dlq?day=${day}`, token('viewer'))).statusCode).toBe(400);
  }
});

it('a tenant operator retries its part of a group: dry run first, then a workflow followed on /replays', async () => {
  const operator = token('operator', { tenant_id: 'acme' });
  expect((await bulk({ action: 'retry', filter: { error_class: CHECK } }, token('viewer'))).statusCode).toBe(403);

  // dry_run is the default: counts, nothing started, nothing changed.
  const dry = await bulk({ action: 'retry', filter: { error_class: CHECK } }, operator);
  expect(dry.statusCode).toBe(200);
  expect(json(dry)).toEqual({
    status: 'dry_run',
    action: 'retry',
    filter: { error_class: CHECK, tenant_id: 'acme' },
    eligible: 4,
    matched: 4,
    by_status: { pending: 4, retrying: 0, resolved: 0, parked: 0, discarded: 0 },
  });
  expect(await statuses(seeded.acme.fixable)).toEqual(Array(4).fill('pending'));

  const started = await bulk(
    { action: 'retry', filter: { error_class: CHECK }, dry_run: false, page_size: 3 },
    operator,
  );
  expect(started.statusCode).toBe(202);
  const { workflow_id, status_url, eligible } = json<{ workflow_id: string; status_url: string; eligible: number }>(
    started,
  );
  expect(workflow_id).toMatch(/^dlq-bulk-retry-/);
  expect(status_url).toBe(`/replays/${workflow_id}`);
  expect(eligible).toBe(4);
  const detail = await finished(workflow_id, operator);
  expect(detail.result).toMatchObject({ status: 'completed', matched: 4, done: 4, pages: 2, counts: { resolved: 4 } });
  expect(detail.audit).toMatchObject({
    kind: 'dlq_bulk',
    status: 'completed',
    tenant_id: 'acme',
    requested_by: expect.stringMatching(/^operator-/),
    published: 4,
    filter: { action: 'retry', errorClass: CHECK, tenantId: 'acme' },
  });
  expect(await statuses(seeded.acme.fixable)).toEqual(Array(4).fill('resolved'));
  // Globex's entries of the same class were not the acme token's to retry.
  expect(await statuses(seeded.globex.fixable)).toEqual(Array(3).fill('pending'));
  // Nor is the bulk action visible to another tenant.
  expect((await get(`/replays/${workflow_id}`, token('viewer', { tenant_id: 'globex' }))).statusCode).toBe(404);
});

it('discard needs a reason; a discarded entry keeps its row and is not retried', async () => {
  const admin = token('admin');
  const group = { error_class: 'invalid_json', topic: env.h.topics.jobs, day: today() };
  const noReason = await bulk({ action: 'discard', filter: group, dry_run: false }, admin);
  expect(noReason.statusCode).toBe(400);
  expect(json(noReason).message).toMatch(/reason is required/);

  const dry = json(await bulk({ action: 'discard', filter: group, reason: 'test data' }, admin));
  expect(dry).toMatchObject({ status: 'dry_run', eligible: 2, matched: 2 });
  const started = json<{ workflow_id: string }>(
    await bulk(
      { action: 'discard', filter: group, reason: 'test data from the APX-311 load test', dry_run: false },
      admin,
    ),
  );
  const detail = await finished(started.workflow_id, admin);
  expect(detail.result).toMatchObject({ counts: { discarded: 2, skipped: 0 } });
  const rows = json<Record<string, unknown>[]>(await get('/dlq?status=discarded', admin));
  expect(rows.map((r) => [r.id, r.discard_reason])).toEqual(
    [...seeded.jobs.badJson].reverse().map((id) => [id, 'test data from the APX-311 load test']),
  );
  const retry = await env.app.inject({
    method: 'POST',
    url: `/dlq/${seeded.jobs.badJson[0]}/retry`,
    headers: as(admin),
  });
  expect(retry.statusCode).toBe(409);
  expect(json(retry).message).toMatch(/discarded: test data/);
});

import { bearer, createApiEnv, json, type ApiEnv } from '../support/api';
import { eventually } from '../support/sink';
import { signToken } from '../support/tokens';

// Issue 13, point 2 through the API and a real worker: preview, apply, audit, roles and tenant scope.

const SECRET = 'dlq-repair-secret-0123456789abcdef';
const exp = Math.floor(Date.now() / 1000) + 3600;
const OPERATOR = bearer(signToken({ sub: 'ops-anna', role: 'operator', exp }, SECRET));
const VIEWER = bearer(signToken({ sub: 'viewer-bo', role: 'viewer', exp }, SECRET));
const ACME = bearer(signToken({ sub: 'acme-ops', role: 'operator', tenant_id: 'acme', exp }, SECRET));

let env: ApiEnv;
let ids: { noTenant: number; badJson: number; acme: number };

beforeAll(async () => {
  env = await createApiEnv('dlq-repair', {
    // The applies below read their outcome from the 200 the API gives when the workflow finishes within its wait:
    // a long wait keeps that true on a busy machine (202 and polling are the API's answer past it).
    env: { AUTH_JWT_SECRET: SECRET, API_REPLAY_RATE_LIMIT_PER_MINUTE: '1000', API_REPLAY_WAIT_MS: '60000' },
  });
  // Real dead letters, as ingest writes them from real Kafka records.
  await env.h.send(env.h.topics.leads, [
    '{"lead_id":1,"name":"no tenant"}',
    '{"lead_id":2,"name":"cut',
    JSON.stringify({ tenant_id: 'acme', lead_id: 3, _replay_count: 'x'.repeat(10) }).replace('"acme"', '"\\u0000"'),
  ]);
  await eventually(async () => (await env.h.dlqCount()) === 3, 'three dead letters');
  const { rows } = await env.h.pool.query<{ id: number; reason: string }>(
    'SELECT id, reason FROM event_dlq ORDER BY id',
  );
  const byReason = (reason: string) => rows.find((r) => r.reason === reason)!.id;
  ids = { noTenant: byReason('missing_tenant'), badJson: byReason('invalid_json'), acme: byReason('invalid_tenant') };
}, 120_000);
afterAll(() => env?.close());

const repair = (headers: Record<string, string>, body: unknown) =>
  env.app.inject({
    method: 'POST',
    url: '/dlq/repair',
    headers: { ...headers, 'x-requested-by': 'test' },
    payload: body as object,
  });

it('previews each entry: before, after, the diff and whether it would journal; nothing is written', async () => {
  const res = await repair(OPERATOR, {
    ids: [ids.noTenant, ids.badJson, 999_999],
    patch: [{ op: 'add', path: '/tenant_id', value: 'acme' }],
    dry_run: true,
  });
  expect(res.statusCode).toBe(200);
  const body = json<Record<string, unknown> & { entries: Record<string, unknown>[] }>(res);
  expect(body).toMatchObject({ status: 'dry_run', matched: 2, previewed: 2, would_journal: 1, refused: 1 });
  expect(body.unknown_ids).toEqual([999_999]);
  // Entries come in id order; the records went to partitions at random, so which dead letter got the lower id varies.
  const entry = (id: number) => body.entries.find((e) => e.id === id);
  expect(body.entries.map((e) => e.id)).toEqual([ids.noTenant, ids.badJson].sort((a, b) => a - b));
  expect(entry(ids.noTenant)).toEqual({
    id: ids.noTenant,
    would_journal: true,
    before: { lead_id: 1, name: 'no tenant' },
    after: { lead_id: 1, name: 'no tenant', tenant_id: 'acme' },
    diff: [{ op: 'add', path: '/tenant_id', value: 'acme' }],
  });
  expect(entry(ids.badJson)).toMatchObject({ id: ids.badJson, would_journal: false, before: null });
  expect(entry(ids.badJson)!.error).toMatch(/not JSON, so a patch has nothing to apply to/);
  const { rows } = await env.h.pool.query("SELECT count(*)::int AS n FROM event_journal WHERE payload ? '_repair_id'");
  expect(rows[0].n).toBe(0);
  expect((await env.h.pool.query('SELECT count(*)::int AS n FROM dlq_repairs')).rows[0].n).toBe(0);
});

it('applies a replacement value durably, with lineage, and audits who did it and what became of each entry', async () => {
  const res = await repair(OPERATOR, {
    ids: [ids.badJson],
    value: { tenant_id: 'globex', lead_id: 2, name: 'cut' },
    reason: 'truncated by the producer',
  });
  expect(res.statusCode).toBe(200);
  const applied = json(res);
  expect(applied).toMatchObject({ status: 'completed', journaled: 1, invalid: 0, skipped: 0 });
  const repairId = applied.repair_id as string;
  expect(applied.status_url).toBe(`/dlq/repairs/${repairId}`);

  const { rows } = await env.h.pool.query('SELECT * FROM event_journal WHERE payload @> $1', [
    JSON.stringify({ _repaired_from_dlq_id: ids.badJson, _repair_id: repairId }),
  ]);
  expect(rows).toHaveLength(1);
  expect(rows[0]).toMatchObject({ tenant_id: 'globex', payload: { lead_id: 2, name: 'cut' } });
  const dlq = (await env.h.pool.query('SELECT * FROM event_dlq WHERE id = $1', [ids.badJson])).rows[0];
  expect(dlq).toMatchObject({ status: 'resolved', resolved_event_id: rows[0].id });
  expect(dlq.raw_bytes.toString()).toBe('{"lead_id":2,"name":"cut');

  const audit = await env.app.inject({ method: 'GET', url: applied.status_url as string, headers: VIEWER });
  expect(audit.statusCode).toBe(200);
  expect(json(audit)).toMatchObject({
    id: repairId,
    requested_by: 'ops-anna',
    tenant_id: null,
    reason: 'truncated by the producer',
    status: 'completed',
    edit: { value: { tenant_id: 'globex', lead_id: 2, name: 'cut' } },
    selection: { ids: [ids.badJson] },
    counts: { journaled: 1, invalid: 0, skipped: 0 },
    entries: [{ dlq_id: ids.badJson, outcome: 'journaled', journal_id: rows[0].id, error: null }],
  });
  // A tenant-scoped token does not see an unscoped repair.
  expect((await env.app.inject({ method: 'GET', url: applied.status_url as string, headers: ACME })).statusCode).toBe(
    404,
  );
});

it('refuses lineage in an edit, another tenant for a scoped token, and viewers; with messages that name why', async () => {
  const lineage = await repair(OPERATOR, {
    ids: [ids.noTenant],
    patch: [
      { op: 'add', path: '/tenant_id', value: 'acme' },
      { op: 'add', path: '/_replayed_from_event_id', value: 1 },
    ],
    dry_run: true,
  });
  expect(json<{ entries: { error: string }[] }>(lineage).entries[0].error).toMatch(
    /_replayed_from_event_id is lineage/,
  );

  // The acme token sees only acme's entries: the one without a tenant is not in its selection.
  const scoped = await repair(ACME, { filter: {}, patch: [{ op: 'add', path: '/x', value: 1 }], dry_run: true });
  expect(json(scoped)).toMatchObject({ matched: 0 });
  expect((await repair(ACME, { filter: { tenant_id: 'globex' }, value: {}, dry_run: true })).statusCode).toBe(403);

  expect((await repair(VIEWER, { ids: [ids.noTenant], value: { tenant_id: 'a' } })).statusCode).toBe(403);
  const both = await repair(OPERATOR, { ids: [ids.noTenant], value: {}, patch: [{ op: 'remove', path: '/a' }] });
  expect(both.statusCode).toBe(400);
  expect(json(both).message).toMatch(/exactly one of patch .* or value/);
  const bad = await repair(OPERATOR, { ids: [ids.noTenant], patch: [{ op: 'rename', path: '/a' }] });
  expect(bad.statusCode).toBe(400);
  const none = await repair(OPERATOR, { filter: { topic: 'no-such-topic' }, value: { tenant_id: 'a' } });
  expect(none.statusCode).toBe(404);
});

it('a patch that fails on some entries of a selection reports them and leaves them untouched', async () => {
  const res = await repair(OPERATOR, {
    filter: { topic: env.h.topics.leads, status: 'pending' },
    patch: [
      { op: 'replace', path: '/name', value: 'fixed' },
      { op: 'add', path: '/tenant_id', value: 'acme' },
    ],
  });
  expect(res.statusCode).toBe(200);
  // The entry without a tenant is journaled; the invalid_tenant one has no /name to replace.
  expect(json(res)).toMatchObject({ journaled: 1, invalid: 1, skipped: 0 });
  const audit = json<{ entries: { dlq_id: number; outcome: string; error: string | null }[] }>(
    await env.app.inject({ method: 'GET', url: json(res).status_url as string, headers: OPERATOR }),
  );
  // The audit lists entries by id (which of the two is lower varies: see above).
  expect(audit.entries).toEqual(
    [
      { dlq_id: ids.noTenant, outcome: 'journaled', journal_id: expect.any(Number), error: null },
      { dlq_id: ids.acme, outcome: 'invalid', journal_id: null, error: expect.stringMatching(/replace \/name/) },
    ].sort((a, b) => a.dlq_id - b.dlq_id),
  );
  const acme = (await env.h.pool.query('SELECT status, attempts FROM event_dlq WHERE id = $1', [ids.acme])).rows[0];
  expect(acme).toEqual({ status: 'pending', attempts: 0 });
});

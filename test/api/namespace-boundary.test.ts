import type { WorkflowHandle } from '@temporalio/client';
import type { Role } from '../../api/auth/principal';
import { bearer, createApiEnv, json, type ApiEnv } from '../support/api';
import { uniqueSuffix } from '../support/env';
import { eventually } from '../support/sink';
import { signToken } from '../support/tokens';

/**
 * Issue 11, point 3: the Temporal namespace is shared with other teams. The replay routes act only on workflows this
 * service started (our id prefix, a replay_audit row, our workflow type) and that the caller's tenant may see; any
 * other workflow id is a 404, and nothing is signalled or cancelled. Foreign workflows run on a task queue no worker
 * polls, so they stay running for the whole file.
 */
const SECRET = 'namespace-boundary-secret-0123456789';
const ROLES: Role[] = ['viewer', 'operator', 'admin'];

let env: ApiEnv;
let foreignQueue: string;
/** Our own range replay (acme), kept running by a low rate limit: the control that the routes still work. */
let ours: string;
const foreign: Record<string, WorkflowHandle> = {};

const token = (role: Role, claims: Record<string, unknown> = {}) =>
  signToken({ sub: `${role}-boundary`, role, exp: Math.floor(Date.now() / 1000) + 600, ...claims }, SECRET);

const routes = (id: string) => {
  const url = `/replays/${encodeURIComponent(id)}`;
  return [
    { method: 'GET' as const, url },
    { method: 'POST' as const, url: `${url}/cancel` },
    { method: 'POST' as const, url: `${url}/pause` },
    { method: 'POST' as const, url: `${url}/resume` },
    { method: 'POST' as const, url: `${url}/rate`, payload: { max_events_per_second: 1 } },
  ];
};

const call = (route: ReturnType<typeof routes>[number], headers: Record<string, string>) =>
  env.app.inject({ ...route, headers });

beforeAll(async () => {
  env = await createApiEnv('api-boundary', {
    ingest: false,
    env: { AUTH_JWT_SECRET: SECRET, API_REPLAY_RATE_LIMIT_PER_MINUTE: '100000', API_REPLAY_WAIT_MS: '0' },
  });
  const { leads } = env.h.topics;
  await env.h.pool.query(
    `INSERT INTO event_journal (tenant_id, topic, payload)
     SELECT 'acme', $1, jsonb_build_object('tenant_id', 'acme', 'n', n) FROM generate_series(1, 20) n`,
    [leads],
  );
  const started = await env.app.inject({
    method: 'POST',
    url: '/replay/range',
    headers: bearer(token('operator', { tenant_id: 'acme' })),
    payload: { start: '2020-01-01T00:00:00Z', end: '2099-01-01T00:00:00Z', max_events_per_second: 0.2 },
  });
  expect(started.statusCode).toBe(202);
  ours = json<{ workflow_id: string }>(started).workflow_id;

  foreignQueue = `other-team-${uniqueSuffix()}`;
  const start = (type: string, workflowId: string) =>
    env.client.workflow.start(type, { taskQueue: foreignQueue, workflowId, args: [{}] });
  const suffix = uniqueSuffix();
  // Another team's workflow under its own name.
  foreign.plain = await start('invoiceSyncWorkflow', `invoice-sync-${suffix}`);
  // Our prefix and even our workflow type, but this service never started it: no audit row.
  foreign.prefixed = await start('rangeReplayWorkflow', `replay-range-${suffix}`);
  // Our prefix and an audit row (a stale or forged one), but not a workflow type of ours.
  foreign.impostor = await start('invoiceSyncWorkflow', `replay-batch-${suffix}`);
  await env.h.pool.query(
    `INSERT INTO replay_audit (workflow_id, kind, source, status) VALUES ($1, 'batch', 'batch', 'running')`,
    [foreign.impostor.workflowId],
  );
}, 120_000);

afterAll(async () => {
  for (const handle of Object.values(foreign)) await handle.terminate('test finished').catch(() => undefined);
  await env?.close();
});

it('our own running replay is visible and controllable (the control for the 404s below)', async () => {
  const status = await env.app.inject({
    method: 'GET',
    url: `/replays/${ours}`,
    headers: bearer(token('viewer', { tenant_id: 'acme' })),
  });
  expect(status.statusCode).toBe(200);
  expect(json(status).workflow_status).toBe('RUNNING');
  // The audit row exists from the moment the API started the workflow, before its first activity.
  expect(json<{ audit: { workflow_id: string } }>(status).audit.workflow_id).toBe(ours);
  const rate = await env.app.inject({
    method: 'POST',
    url: `/replays/${ours}/rate`,
    headers: bearer(token('operator')),
    payload: { max_events_per_second: 0.2 },
  });
  expect(rate.statusCode).toBe(202);
});

it.each(['plain', 'prefixed', 'impostor'])(
  'a foreign workflow (%s) is not found on any replay route, for every role',
  async (name) => {
    const id = foreign[name].workflowId;
    for (const role of ROLES) {
      for (const route of routes(id)) {
        const res = await call(route, bearer(token(role)));
        if (role === 'viewer' && route.method === 'POST') {
          // A viewer may control no workflow at all: the refusal does not depend on whose workflow it is.
          const own = await call({ ...route, url: route.url.replace(id, ours) }, bearer(token(role)));
          expect({ status: res.statusCode, body: json(res).message }).toEqual({
            status: own.statusCode,
            body: json(own).message,
          });
          expect(res.statusCode).toBe(403);
        } else {
          expect({ role, route: route.url, status: res.statusCode }).toEqual({ role, route: route.url, status: 404 });
          expect(json(res).message).toBe(`Replay ${id} not found`);
        }
      }
    }
  },
);

it('the foreign workflows were neither cancelled nor signalled', async () => {
  for (const handle of Object.values(foreign)) {
    const description = await handle.describe();
    expect(description.status.name).toBe('RUNNING');
    expect(description.taskQueue).toBe(foreignQueue);
    const history = await handle.fetchHistory();
    const touched = (history.events ?? []).filter(
      (e) => e.workflowExecutionCancelRequestedEventAttributes || e.workflowExecutionSignaledEventAttributes,
    );
    expect(touched).toEqual([]);
  }
});

it("a tenant-scoped token sees only its tenant's replays: another tenant's is the same 404", async () => {
  for (const role of ROLES) {
    for (const route of routes(ours)) {
      const res = await call(route, bearer(token(role, { tenant_id: 'globex' })));
      const expected = role === 'viewer' && route.method === 'POST' ? 403 : 404;
      expect({ role, route: route.url, status: res.statusCode }).toEqual({ role, route: route.url, status: expected });
    }
  }
  // The acme operator may pause and resume it; the workflow really took the signals.
  const acme = bearer(token('operator', { tenant_id: 'acme' }));
  expect((await env.app.inject({ method: 'POST', url: `/replays/${ours}/pause`, headers: acme })).statusCode).toBe(202);
  await eventually(async () => {
    const res = await env.app.inject({ method: 'GET', url: `/replays/${ours}`, headers: acme });
    return json<{ progress: { status: string } | null }>(res).progress?.status === 'paused';
  }, 'the range replay to report paused');
  expect((await env.app.inject({ method: 'POST', url: `/replays/${ours}/resume`, headers: acme })).statusCode).toBe(
    202,
  );
});

it('an unscoped replay is invisible to tenant-scoped tokens', async () => {
  const started = await env.app.inject({
    method: 'POST',
    url: '/replay/range',
    headers: bearer(token('operator')),
    payload: { start: '2020-01-01T00:00:00Z', end: '2099-01-01T00:00:00Z', max_events_per_second: 0.2 },
  });
  expect(started.statusCode).toBe(202);
  const id = json<{ workflow_id: string }>(started).workflow_id;
  const scoped = await env.app.inject({
    method: 'GET',
    url: `/replays/${id}`,
    headers: bearer(token('admin', { tenant_id: 'acme' })),
  });
  expect(scoped.statusCode).toBe(404);
  const cancel = await env.app.inject({
    method: 'POST',
    url: `/replays/${id}/cancel`,
    headers: bearer(token('admin')),
  });
  expect(cancel.statusCode).toBe(202);
});

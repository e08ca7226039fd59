import type { AddressInfo } from 'node:net';
import { mintToken } from '../../api/auth/jwt';
import { TABLE_CALLERS } from '../../api/auth/policy';
import { createApiEnv, type ApiEnv } from '../support/api';
import { uniqueSuffix } from '../support/env';
import { readmePolicyTable } from '../support/readme-policy';

/**
 * Generated from the README's "Who can do what" table: every route, called over HTTP on the listening API as each
 * caller the table has a column for, answers 403 where the table says 403 and gets past auth (neither 401 nor 403)
 * where it says yes. Path parameters name nothing that exists and bodies are empty, so nothing is changed on the way.
 */
const SECRET = 'roles-test-secret-0123456789abcdef';

let env: ApiEnv;
let base: string;
const tokens = new Map<string, string>();

const [header, ...rows] = readmePolicyTable();
const callers = header.slice(2);
const cases = rows.flatMap(([route, , ...cells]) =>
  cells.map((cell, i) => ({ route: route.replace(/`/g, ''), caller: callers[i], expected: cell })),
);

beforeAll(async () => {
  env = await createApiEnv('roles', {
    env: {
      AUTH_JWT_SECRET: SECRET,
      API_REPLAY_RATE_LIMIT_PER_MINUTE: '100000',
      // A schedule that does not exist: an admin's trigger gets past auth and then finds nothing to run.
      DLQ_RETRY_SCHEDULE_ID: `roles-test-schedule-${uniqueSuffix()}`,
    },
    worker: false,
    ingest: false,
  });
  await env.app.listen({ host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(env.app.server.address() as AddressInfo).port}`;
  for (const { label, principal } of TABLE_CALLERS) {
    const claims = { sub: `roles-${label}`, role: principal.role, tenant_id: principal.tenantId };
    tokens.set(label, await mintToken(claims, { secret: SECRET, ttlSeconds: 600 }));
  }
});

afterAll(() => env?.close());

/** The route with harmless path parameters: an event id and a workflow id that do not exist. */
function urlOf(path: string): string {
  return path.replace(':id', '999999999').replace(':workflowId', 'replay-event-999999999-none');
}

it('the table covers every route the API documents, and each of its routes exists', () => {
  const doc = env.app.swagger() as { paths: Record<string, Record<string, unknown>> };
  const documented = Object.entries(doc.paths).flatMap(([path, methods]) =>
    Object.keys(methods).map((m) => `${m.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ':$1')}`),
  );
  const listed = rows.map(([route]) => route.replace(/`/g, ''));
  expect(documented.filter((r) => !listed.includes(r))).toEqual([]);
  for (const route of listed) {
    const [method, url] = route.split(' ');
    expect({ route, exists: env.app.hasRoute({ method: method as 'GET', url }) }).toEqual({ route, exists: true });
  }
  expect(cases.length).toBe(listed.length * TABLE_CALLERS.length);
});

it.each(cases)('$route as $caller: $expected', async ({ route, caller, expected }) => {
  const [method, path] = route.split(' ');
  const body = method === 'GET' || path.endsWith('/trigger') || path === '/replay/:id' ? undefined : '{}';
  const res = await fetch(`${base}${urlOf(path)}`, {
    method,
    headers: {
      authorization: `Bearer ${tokens.get(caller)}`,
      ...(body ? { 'content-type': 'application/json' } : {}),
    },
    body,
  });
  // The stream would never end: its status and the first bytes are all this needs.
  const text = path === '/crm-events' ? '' : await res.text();
  await res.body?.cancel().catch(() => undefined);
  if (expected === '403') {
    expect({ status: res.status, text }).toEqual({
      status: 403,
      text: expect.stringMatching(/needs (operator|admin)|scoped to tenant/),
    });
  } else {
    // Past auth: whatever the route then answers for these empty requests, it is neither 401/403 nor a failure.
    expect({ status: res.status, pastAuth: ![401, 403].includes(res.status) && res.status < 500, text }).toEqual({
      status: res.status,
      pastAuth: true,
      text,
    });
  }
});

it('changed nothing: no replay was started', async () => {
  expect((await env.h.pool.query('SELECT 1 FROM replay_audit')).rows).toHaveLength(0);
});

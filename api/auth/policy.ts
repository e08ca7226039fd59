import { hasRole, ROLES, type Principal, type Role } from './principal';

/** Who may call a route: anyone, or a least role; `global` routes change state for every tenant. */
export interface RoutePolicy {
  /** `METHOD /path` as Fastify registers it. */
  route: string;
  /** Least role, or `public` for routes that need no token. */
  role: Role | 'public';
  /** Changes settings shared by all tenants: tenant-scoped tokens are refused, whatever their role. */
  global: boolean;
}

/**
 * The access policy of every API route, the one place it is written: the auth plugin enforces it, the README's
 * "Who can do what" table is rendered from it and the role test walks it.
 */
export const ROUTE_POLICY: readonly RoutePolicy[] = [
  { route: 'GET /', role: 'public', global: false },
  { route: 'GET /health', role: 'public', global: false },
  { route: 'GET /healthz', role: 'public', global: false },
  { route: 'GET /metrics', role: 'public', global: false },
  { route: 'GET /console', role: 'public', global: false },
  { route: 'GET /events', role: 'viewer', global: false },
  { route: 'GET /events/latest', role: 'viewer', global: false },
  { route: 'GET /events/export', role: 'viewer', global: false },
  { route: 'GET /events/:id', role: 'viewer', global: false },
  { route: 'GET /crm-events', role: 'viewer', global: false },
  { route: 'GET /replays', role: 'viewer', global: false },
  { route: 'GET /replays/:workflowId', role: 'viewer', global: false },
  { route: 'GET /dlq', role: 'viewer', global: false },
  { route: 'GET /dlq/retry-schedule', role: 'viewer', global: false },
  { route: 'GET /dlq/repairs/:id', role: 'viewer', global: false },
  { route: 'GET /dlq/groups', role: 'viewer', global: false },
  { route: 'POST /replay/:id', role: 'operator', global: false },
  { route: 'POST /replay/batch', role: 'operator', global: false },
  { route: 'POST /replay/range', role: 'operator', global: false },
  { route: 'POST /replays/:workflowId/pause', role: 'operator', global: false },
  { route: 'POST /replays/:workflowId/resume', role: 'operator', global: false },
  { route: 'POST /replays/:workflowId/cancel', role: 'operator', global: false },
  { route: 'POST /replays/:workflowId/rate', role: 'operator', global: false },
  { route: 'POST /dlq/:id/retry', role: 'operator', global: false },
  { route: 'POST /dlq/repair', role: 'operator', global: false },
  { route: 'POST /dlq/bulk', role: 'operator', global: false },
  { route: 'PATCH /dlq/retry-schedule', role: 'admin', global: true },
  { route: 'POST /dlq/retry-schedule/trigger', role: 'admin', global: true },
  { route: 'GET /retention', role: 'admin', global: true },
  { route: 'PUT /retention', role: 'admin', global: true },
  { route: 'GET /maintenance', role: 'admin', global: true },
  { route: 'POST /maintenance/run', role: 'admin', global: true },
  { route: 'GET /archive', role: 'admin', global: true },
  { route: 'POST /erasure', role: 'admin', global: true },
  { route: 'GET /erasure', role: 'admin', global: true },
  { route: 'GET /erasure/:id', role: 'admin', global: true },
  { route: 'GET /notifications', role: 'admin', global: true },
  { route: 'PUT /notifications', role: 'admin', global: true },
  { route: 'GET /notifications/deliveries', role: 'admin', global: true },
];

/** A route missing from the table needs a viewer to read and an operator to change anything. */
export function policyFor(method: string, url: string): RoutePolicy {
  const lookup = method === 'HEAD' ? 'GET' : method;
  const found = ROUTE_POLICY.find((p) => p.route === `${lookup} ${url}`);
  if (found) return found;
  return { route: `${method} ${url}`, role: lookup === 'GET' ? 'viewer' : 'operator', global: false };
}

/** Why a principal may not call a route, or undefined when it may. */
export function refusal(policy: RoutePolicy, principal: Principal): string | undefined {
  if (policy.role === 'public') return undefined;
  if (!hasRole(principal.role, policy.role)) {
    return `Role ${principal.role} may not do this; it needs ${policy.role} or higher`;
  }
  if (policy.global && principal.tenantId !== undefined) {
    return (
      `This token is scoped to tenant ${principal.tenantId}; ${policy.route} ` +
      `${policy.route.startsWith('GET ') ? 'shows data of every tenant' : 'changes settings for every tenant'} ` +
      'and needs an admin token without tenant_id'
    );
  }
  return undefined;
}

/** The callers the README table has a column for. */
export const TABLE_CALLERS: readonly { label: string; principal: Principal }[] = [
  ...ROLES.map((role) => ({ label: role, principal: { subject: role, role } })),
  ...ROLES.map((role) => ({
    label: `tenant ${role}`,
    principal: { subject: `tenant-${role}`, role, tenantId: 'acme' },
  })),
];

/** The README's "Who can do what" table as cells, header first, from ROUTE_POLICY (a test compares the two). */
export function policyTable(): string[][] {
  const header = ['Route', 'Needs', ...TABLE_CALLERS.map((c) => c.label)];
  const rows = ROUTE_POLICY.map((policy) => [
    `\`${policy.route}\``,
    policy.role === 'public' ? 'no token' : `${policy.role}${policy.global ? ', no tenant_id' : ''}`,
    ...TABLE_CALLERS.map((c) => (refusal(policy, c.principal) === undefined ? 'yes' : '403')),
  ]);
  return [header, ...rows];
}

/** The table as Markdown, to paste into the README. */
export function renderPolicyTable(): string {
  const [header, ...rows] = policyTable();
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

import { policyFor, policyTable, refusal, ROUTE_POLICY } from '../../api/auth/policy';
import { readmePolicyTable } from '../support/readme-policy';

describe('route policy', () => {
  it("the README's Who can do what table is the rendering of ROUTE_POLICY", () => {
    expect(readmePolicyTable()).toEqual(policyTable());
  });

  it('lists each route once', () => {
    const routes = ROUTE_POLICY.map((p) => p.route);
    expect(new Set(routes).size).toBe(routes.length);
  });

  it('a tenant-scoped admin is refused on global routes, naming its tenant; an unscoped admin is not', () => {
    const schedule = policyFor('PATCH', '/dlq/retry-schedule');
    expect(schedule).toMatchObject({ role: 'admin', global: true });
    expect(refusal(schedule, { subject: 'a', role: 'admin' })).toBeUndefined();
    expect(refusal(schedule, { subject: 't', role: 'admin', tenantId: 'acme' })).toMatch(
      /scoped to tenant acme; PATCH \/dlq\/retry-schedule changes settings for every tenant/,
    );
    expect(refusal(schedule, { subject: 'o', role: 'operator' })).toMatch(/Role operator .* needs admin/);
  });

  it('every global route needs admin (a global setting is never an operator matter)', () => {
    const global = ROUTE_POLICY.filter((p) => p.global);
    expect(global.length).toBeGreaterThan(0);
    for (const policy of global) expect(policy.role).toBe('admin');
  });

  it('a route missing from the table needs a viewer to read and an operator to write; HEAD follows GET', () => {
    expect(policyFor('GET', '/not-listed')).toMatchObject({ role: 'viewer', global: false });
    expect(policyFor('DELETE', '/not-listed')).toMatchObject({ role: 'operator', global: false });
    expect(policyFor('HEAD', '/health')).toMatchObject({ role: 'public' });
  });
});

import fc from 'fast-check';
import { LINEAGE_FIELDS } from '../../journal/kinds';
import { payloadTenant } from '../../journal/record';
import { bearer, createApiEnv, json, type ApiEnv } from '../support/api';
import { seedDeadLetters } from '../support/dlq';
import { patchArbitrary } from '../support/json-patch';
import { signToken } from '../support/tokens';

/**
 * POST /dlq/repair dry runs with generated patches (pointers with escapes, "-", indexes, lineage names, the tokens
 * rfc6902 skips, values of every JSON type) and generated replacement values, by an unscoped and a tenant-scoped
 * token: never a 5xx, a 400 names its problem, and no preview that would journal changes a lineage field or leaves
 * the token's tenant.
 */
const SECRET = 'attack7-ops-repair-http-secret-0123456789';
const exp = Math.floor(Date.now() / 1000) + 3600;
const OPERATOR = bearer(signToken({ sub: 'a7-ops', role: 'operator', exp }, SECRET));
const ACME = bearer(signToken({ sub: 'a7-acme', role: 'operator', tenant_id: 'acme', exp }, SECRET));
let env: ApiEnv;
let ids: number[];

beforeAll(async () => {
  env = await createApiEnv('a7opsrepairhttp', {
    ingest: false,
    env: { AUTH_JWT_SECRET: SECRET, API_REPLAY_RATE_LIMIT_PER_MINUTE: '100000' },
  });
  const acme = await seedDeadLetters(env.h.pool, env.h.topics.leads, { fixable: 2, noTenant: 1, badJson: 1 });
  const other = await seedDeadLetters(env.h.pool, env.h.topics.leads, { fixable: 1, tenant: 'globex' });
  ids = [...acme.fixable, ...acme.noTenant, ...acme.badJson, ...other.fixable];
});
afterAll(() => env?.close());

const NAMES = ['lead_id', 'tenant_id', 'tenantId', '-', '0', '~0', '~1', '__proto__', 'constructor', ...LINEAGE_FIELDS];
const pointer = fc.oneof(
  fc.constantFrom('', '/', '/-'),
  fc
    .array(fc.oneof(fc.constantFrom(...NAMES), fc.string({ maxLength: 3 })), { minLength: 1, maxLength: 3 })
    .map((tokens) => `/${tokens.join('/')}`),
);
const value = fc.dictionary(fc.oneof(fc.constantFrom(...NAMES), fc.string({ maxLength: 4 })), fc.jsonValue(), {
  maxKeys: 4,
});
const edit = fc.oneof(
  patchArbitrary(pointer, 3).map((patch) => ({ patch })),
  value.map((v) => ({ value: v })),
);

it('a generated edit is previewed or refused with a 400, never a 5xx, and never previews lineage or another tenant', async () => {
  await fc.assert(
    fc.asyncProperty(edit, fc.boolean(), async (body, scoped) => {
      const res = await env.app.inject({
        method: 'POST',
        url: '/dlq/repair',
        headers: { ...(scoped ? ACME : OPERATOR), 'x-requested-by': 'test' },
        payload: { ids, dry_run: true, ...body },
      });
      expect([200, 400]).toContain(res.statusCode);
      if (res.statusCode === 400) {
        expect(json<{ message: string }>(res).message).toMatch(/\w/);
        return;
      }
      const { entries } = json<{ entries: Array<{ would_journal: boolean; after: Record<string, unknown> | null }> }>(
        res,
      );
      for (const entry of entries.filter((e) => e.would_journal)) {
        for (const field of LINEAGE_FIELDS) expect(Object.hasOwn(entry.after!, field)).toBe(false);
        // The tenant as ingest reads it: a payload field, else the dead letter's own tenant (acme's, for this token).
        if (scoped) expect(payloadTenant(entry.after!) ?? 'acme').toBe('acme');
      }
    }),
    { numRuns: 400 },
  );
}, 240_000);

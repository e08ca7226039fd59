import { parseArgs } from 'node:util';
import { mintToken } from '../../api/auth/jwt';
import { isRole, ROLES } from '../../api/auth/principal';
import { loadConfig } from '../../shared/config';

/**
 * `token`: mints an HS256 bearer token with jose, for operators and scripts. It always expires (--ttl), carries the
 * configured iss/aud, and is signed with AUTH_JWT_SECRET or, with --kid (default: the first of AUTH_JWT_SECRETS), a
 * key of the rotation ring. Tokens for a JWKS come from the identity provider, not from here.
 */
export async function tokenCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      role: { type: 'string', default: 'operator' },
      tenant: { type: 'string' },
      subject: { type: 'string', default: process.env.USER ?? 'operator' },
      ttl: { type: 'string', default: '3600' },
      kid: { type: 'string' },
    },
  });
  const { api } = loadConfig();
  if (!isRole(values.role)) throw new Error(`--role must be one of ${ROLES.join(', ')}`);
  const ttl = Number(values.ttl);
  if (!Number.isSafeInteger(ttl) || ttl < 1) throw new Error('--ttl must be a whole number of seconds');
  const ring = Object.keys(api.jwtSecrets);
  const kid = values.kid ?? (api.jwtSecret ? undefined : ring[0]);
  const secret = kid === undefined ? api.jwtSecret : api.jwtSecrets[kid];
  if (!secret) {
    if (kid !== undefined) throw new Error(`--kid ${kid} is not in AUTH_JWT_SECRETS (${ring.join(', ') || 'empty'})`);
    if (api.jwksUrl) throw new Error('Only AUTH_JWKS_URL is set: tokens come from the identity provider');
    throw new Error('AUTH_JWT_SECRET is not set: auth is off and no token is needed');
  }
  const token = await mintToken(
    { sub: values.subject!, role: values.role, ...(values.tenant ? { tenant_id: values.tenant } : {}) },
    { secret, kid, ttlSeconds: ttl, issuer: api.issuer, audience: api.audience },
  );
  console.log(token);
}

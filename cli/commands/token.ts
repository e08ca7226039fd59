import { parseArgs } from 'node:util';
import { ROLES, signToken, type Role } from '../../api/auth/jwt';
import { loadConfig } from '../../shared/config';

/** `token`: mints an HS256 bearer token with AUTH_JWT_SECRET, for operators and scripts. */
export async function tokenCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      role: { type: 'string', default: 'operator' },
      tenant: { type: 'string' },
      subject: { type: 'string', default: process.env.USER ?? 'operator' },
      ttl: { type: 'string', default: '3600' },
    },
  });
  const secret = loadConfig().api.jwtSecret;
  if (!secret) throw new Error('AUTH_JWT_SECRET is not set: auth is off and no token is needed');
  if (!ROLES.includes(values.role as Role)) throw new Error(`--role must be one of ${ROLES.join(', ')}`);
  const ttl = Number(values.ttl);
  if (!Number.isSafeInteger(ttl) || ttl < 1) throw new Error('--ttl must be a whole number of seconds');
  const token = signToken(
    {
      sub: values.subject!,
      role: values.role as Role,
      ...(values.tenant ? { tenant_id: values.tenant } : {}),
      exp: Math.floor(Date.now() / 1000) + ttl,
    },
    secret,
  );
  console.log(token);
}

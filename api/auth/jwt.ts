import { createHmac, timingSafeEqual } from 'node:crypto';

export type Role = 'viewer' | 'operator' | 'admin';
export const ROLES: Role[] = ['viewer', 'operator', 'admin'];

/** Who is calling: from a verified token, or the anonymous admin when auth is off. */
export interface Principal {
  subject: string;
  role: Role;
  /** Present for tenant-scoped tokens: the caller sees and replays only this tenant's events. */
  tenantId?: string;
}

export interface TokenClaims {
  sub: string;
  role: Role;
  tenant_id?: string;
  exp?: number;
  nbf?: number;
  iat?: number;
}

const b64url = (data: Buffer | string) => Buffer.from(data).toString('base64url');

/** Signs an HS256 JWT (the `token` CLI command and tests use it). */
export function signToken(claims: TokenClaims, secret: string): string {
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify({ iat: Math.floor(Date.now() / 1000), ...claims }));
  const signature = createHmac('sha256', secret).update(`${header}.${body}`).digest('base64url');
  return `${header}.${body}.${signature}`;
}

/** Why a token was refused; the message goes back in the 401 body. */
export class TokenError extends Error {
  override readonly name = 'TokenError';
}

/**
 * Verifies an HS256 JWT: only alg HS256 is accepted (never "none", never another algorithm), the signature is
 * compared in constant time, exp/nbf are enforced, and the role claim must be one we know.
 */
export function verifyToken(token: string, secret: string, nowSeconds = Math.floor(Date.now() / 1000)): Principal {
  const parts = token.split('.');
  if (parts.length !== 3) throw new TokenError('Malformed token: expected header.payload.signature');
  const [headerPart, bodyPart, signaturePart] = parts;
  const header = decodeJson(headerPart, 'header');
  if (header.alg !== 'HS256')
    throw new TokenError(`Token algorithm ${JSON.stringify(header.alg)} is not accepted; use HS256`);
  const expected = createHmac('sha256', secret).update(`${headerPart}.${bodyPart}`).digest();
  const given = Buffer.from(signaturePart, 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected))
    throw new TokenError('Token signature is invalid');
  const claims = decodeJson(bodyPart, 'payload');
  if (typeof claims.exp === 'number' && claims.exp <= nowSeconds) throw new TokenError('Token has expired');
  if (typeof claims.nbf === 'number' && claims.nbf > nowSeconds) throw new TokenError('Token is not valid yet');
  if (!ROLES.includes(claims.role as Role)) throw new TokenError(`Token role must be one of ${ROLES.join(', ')}`);
  if (typeof claims.sub !== 'string' || claims.sub === '') throw new TokenError('Token has no subject (sub)');
  const tenant = claims.tenant_id;
  if (tenant !== undefined && (typeof tenant !== 'string' || tenant === ''))
    throw new TokenError('Token tenant_id must be a non-empty string');
  return { subject: claims.sub, role: claims.role as Role, ...(tenant ? { tenantId: tenant as string } : {}) };
}

function decodeJson(part: string, what: string): Record<string, unknown> {
  try {
    const value = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value;
  } catch {
    // fall through
  }
  throw new TokenError(`Malformed token ${what}`);
}

/** True when `role` may do what `needed` may. */
export function hasRole(role: Role, needed: Role): boolean {
  return ROLES.indexOf(role) >= ROLES.indexOf(needed);
}

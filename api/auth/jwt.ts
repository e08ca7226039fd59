import {
  createRemoteJWKSet,
  decodeProtectedHeader,
  jwtVerify,
  SignJWT,
  type FlattenedJWSInput,
  type JWTHeaderParameters,
  type JWTPayload,
  type KeyLike,
} from 'jose';
import type { Config } from '../../shared/config';
import { isRole, ROLES, type Principal, type Role } from './principal';

/** Where token keys come from and what every token must say about itself. */
export interface AuthSettings {
  /** HS256 key for tokens without a `kid` header (AUTH_JWT_SECRET). */
  secret?: string;
  /** HS256 keys by `kid` (AUTH_JWT_SECRETS): several are valid at once, so a key can be rotated without downtime. */
  secrets: Record<string, string>;
  /** An OIDC provider's JWKS (AUTH_JWKS_URL): RS256/ES256 tokens, rotated by the provider. */
  jwksUrl?: string;
  /** Required `iss` (AUTH_ISSUER). */
  issuer?: string;
  /** Required `aud` (AUTH_AUDIENCE). */
  audience?: string;
}

/** The auth settings in a loaded config. */
export function authSettings(api: Config['api']): AuthSettings {
  return {
    secret: api.jwtSecret,
    secrets: api.jwtSecrets,
    jwksUrl: api.jwksUrl,
    issuer: api.issuer,
    audience: api.audience,
  };
}

/** True when any key source is configured, i.e. auth is on. */
export function authEnabled(settings: AuthSettings): boolean {
  return Boolean(settings.secret || Object.keys(settings.secrets).length > 0 || settings.jwksUrl);
}

/** Why a token was refused; the message goes back in the 401 body. */
export class TokenError extends Error {
  override readonly name = 'TokenError';
}

/** The key source could not be read (JWKS unreachable or invalid): the caller is not at fault, so this is a 503. */
export class KeySourceError extends Error {
  override readonly name = 'KeySourceError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Algorithms a JWKS key may use; HS256 only ever comes from our own secrets (no key confusion). */
const JWKS_ALGORITHMS = ['RS256', 'ES256'];

/** Checks bearer tokens against the configured keys. */
export interface TokenVerifier {
  verify(token: string): Promise<Principal>;
}

/**
 * Verifies JWTs with jose: HS256 with our secrets (by `kid`, or the default secret without one) and/or RS256/ES256
 * from the JWKS; `exp` and `sub` are required, `iss`/`aud` checked when configured, and the role claim must be known.
 */
export function createTokenVerifier(settings: AuthSettings): TokenVerifier {
  const encode = (secret: string) => new TextEncoder().encode(secret);
  const hmacKeys = new Map(Object.entries(settings.secrets).map(([kid, secret]) => [kid, encode(secret)]));
  const defaultKey = settings.secret ? encode(settings.secret) : undefined;
  // The JWKS is cached; an unknown kid refetches it (at most every 30 s), which is how provider rotation lands.
  const jwks = settings.jwksUrl
    ? createRemoteJWKSet(new URL(settings.jwksUrl), { timeoutDuration: 5000, cooldownDuration: 30_000 })
    : undefined;
  const algorithms = [...(defaultKey || hmacKeys.size > 0 ? ['HS256'] : []), ...(jwks ? JWKS_ALGORITHMS : [])];

  const key = async (header: JWTHeaderParameters, token: FlattenedJWSInput): Promise<KeyLike | Uint8Array> => {
    if (header.alg === 'HS256') {
      if (header.kid === undefined) {
        if (defaultKey) return defaultKey;
        throw new TokenError('Token has no key id (kid) and no default key (AUTH_JWT_SECRET) is configured');
      }
      const found = hmacKeys.get(header.kid);
      if (!found) throw new TokenError(`Token key id (kid) ${JSON.stringify(header.kid)} is not a configured key`);
      return found;
    }
    try {
      return await jwks!(header, token);
    } catch (err) {
      throw explainKeyLookup(err, header.kid);
    }
  };

  return {
    async verify(token) {
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, key, {
          algorithms,
          issuer: settings.issuer,
          audience: settings.audience,
          requiredClaims: ['exp', 'sub'],
        }));
      } catch (err) {
        throw explainVerification(err, token, algorithms, settings);
      }
      return principalOf(payload);
    },
  };
}

function principalOf(claims: JWTPayload): Principal {
  if (!isRole(claims.role)) throw new TokenError(`Token role must be one of ${ROLES.join(', ')}`);
  if (typeof claims.sub !== 'string' || claims.sub === '') throw new TokenError('Token has no subject (sub)');
  const tenant = claims.tenant_id;
  if (tenant !== undefined && (typeof tenant !== 'string' || tenant === ''))
    throw new TokenError('Token tenant_id must be a non-empty string');
  return { subject: claims.sub, role: claims.role, ...(tenant ? { tenantId: tenant } : {}) };
}

const codeOf = (err: unknown): string | undefined => (err as { code?: string } | null)?.code;

function explainKeyLookup(err: unknown, kid: string | undefined): Error {
  switch (codeOf(err)) {
    case 'ERR_JWKS_NO_MATCHING_KEY':
      return new TokenError(`No key in the JWKS matches the token's key id (kid) ${JSON.stringify(kid ?? null)}`);
    case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
      return new TokenError('Several JWKS keys match the token; it must name one with a key id (kid)');
    default:
      return new KeySourceError(`Cannot read the JWKS: ${(err as Error).message}`, { cause: err });
  }
}

/** Turns jose's error codes into a message that names what is wrong with the token (tests match on `name`). */
function explainVerification(err: unknown, token: string, algorithms: string[], settings: AuthSettings): Error {
  if (err instanceof Error && (err.name === 'TokenError' || err.name === 'KeySourceError')) return err;
  const claimError = err as { claim?: string; reason?: string };
  switch (codeOf(err)) {
    case 'ERR_JWT_EXPIRED':
      return new TokenError('Token has expired');
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      if (claimError.reason === 'missing' && claimError.claim === 'exp')
        return new TokenError('Token has no expiry (exp): every token must expire');
      if (claimError.reason === 'missing' && claimError.claim === 'sub')
        return new TokenError('Token has no subject (sub)');
      if (claimError.claim === 'nbf') return new TokenError('Token is not valid yet (nbf)');
      if (claimError.claim === 'iss') return new TokenError(`Token issuer (iss) must be ${settings.issuer}`);
      if (claimError.claim === 'aud') return new TokenError(`Token audience (aud) must include ${settings.audience}`);
      return new TokenError(`Token claim ${claimError.claim ?? ''} is invalid: ${(err as Error).message}`);
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
      return new TokenError(
        `Token algorithm ${JSON.stringify(headerAlg(token))} is not accepted; use ${algorithms.join(' or ')}`,
      );
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return new TokenError('Token signature is invalid');
    case 'ERR_JWS_INVALID':
    case 'ERR_JWT_INVALID':
    case 'ERR_JOSE_NOT_SUPPORTED':
      return new TokenError(`Malformed token: ${(err as Error).message}`);
    default:
      return err instanceof Error ? err : new Error(String(err));
  }
}

function headerAlg(token: string): unknown {
  try {
    return decodeProtectedHeader(token).alg;
  } catch {
    return undefined;
  }
}

/** What a minted token says. */
export interface TokenClaims {
  sub: string;
  role: Role;
  tenant_id?: string;
}

/** Mints an HS256 token with jose; it always expires. The `token` CLI command uses it. */
export function mintToken(
  claims: TokenClaims,
  opts: { secret: string; kid?: string; ttlSeconds: number; issuer?: string; audience?: string },
): Promise<string> {
  let jwt = new SignJWT({ role: claims.role, ...(claims.tenant_id ? { tenant_id: claims.tenant_id } : {}) })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT', ...(opts.kid ? { kid: opts.kid } : {}) })
    .setSubject(claims.sub)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + opts.ttlSeconds);
  if (opts.issuer) jwt = jwt.setIssuer(opts.issuer);
  if (opts.audience) jwt = jwt.setAudience(opts.audience);
  return jwt.sign(new TextEncoder().encode(opts.secret));
}

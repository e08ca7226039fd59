import fp from 'fastify-plugin';
import type { FastifyRequest } from 'fastify';
import { authEnabled, createTokenVerifier, type AuthSettings } from '../auth/jwt';
import { policyFor, refusal } from '../auth/policy';
import type { Principal } from '../auth/principal';
import { httpError } from '../http-error';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal;
  }
  interface FastifyContextConfig {
    /** Also accept the token as ?access_token= (EventSource cannot send headers). */
    tokenInQuery?: boolean;
  }
}

const ANONYMOUS: Principal = { subject: 'anonymous', role: 'admin' };

/**
 * Bearer-token auth (JWT verified with jose: HS256 secrets and/or an OIDC JWKS) and the role policy of
 * api/auth/policy.ts. Without any key source, auth is off: every caller is an anonymous admin, logged at start.
 */
export default fp<{ settings: AuthSettings }>(
  async (app, { settings }) => {
    const enabled = authEnabled(settings);
    if (!enabled) {
      app.log.warn(
        'AUTH IS OFF: neither AUTH_JWT_SECRET, AUTH_JWT_SECRETS nor AUTH_JWKS_URL is set, so every API caller is an anonymous admin (the API listens beyond this host only with AUTH_MODE=none)',
      );
    }
    const verifier = enabled ? createTokenVerifier(settings) : undefined;
    app.decorateRequest('principal', null as unknown as Principal);
    app.addHook('onRequest', async (request) => {
      if (!verifier) {
        request.principal = ANONYMOUS;
        return;
      }
      const url = request.routeOptions.url;
      if (url === undefined || url.startsWith('/docs')) return; // 404s and the OpenAPI UI
      const policy = policyFor(request.method, url);
      if (policy.role === 'public') return;
      const token = bearerToken(request);
      if (!token) throw httpError(401, 'Missing bearer token: send Authorization: Bearer <jwt>');
      try {
        request.principal = await verifier.verify(token);
      } catch (err) {
        const name = (err as Error).name;
        if (name === 'TokenError') throw httpError(401, (err as Error).message);
        if (name === 'KeySourceError') {
          request.log.error({ err }, 'token keys unavailable');
          throw httpError(503, 'Token keys are unavailable (JWKS); try again shortly');
        }
        throw err;
      }
      const refused = refusal(policy, request.principal);
      if (refused) throw httpError(403, refused);
    });
  },
  { name: 'auth' },
);

function bearerToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  // The scheme is case-insensitive (RFC 9110, 11.1), as the browser guard already reads it.
  const match = /^bearer\s+(.*)$/i.exec(header ?? '');
  if (match) return match[1].trim() || undefined;
  if (request.routeOptions.config?.tokenInQuery) {
    const query = request.query as { access_token?: unknown } | undefined;
    if (typeof query?.access_token === 'string' && query.access_token !== '') return query.access_token;
  }
  return undefined;
}

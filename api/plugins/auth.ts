import fp from 'fastify-plugin';
import type { FastifyRequest } from 'fastify';
import { hasRole, TokenError, verifyToken, type Principal, type Role } from '../auth/jwt';
import { httpError } from '../http-error';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal;
  }
  interface FastifyContextConfig {
    /** Least role a route needs; GET routes default to viewer, everything else to operator. */
    role?: Role;
    /** Also accept the token as ?access_token= (EventSource cannot send headers). */
    tokenInQuery?: boolean;
  }
}

const ANONYMOUS: Principal = { subject: 'anonymous', role: 'admin' };

/**
 * Bearer-token auth (HS256 JWT with a role and an optional tenant_id claim). Without a secret, auth is off: every
 * caller is an anonymous admin and a warning is logged at start.
 */
export default fp<{ secret?: string }>(
  async (app, { secret }) => {
    if (!secret) {
      app.log.warn(
        'AUTH IS OFF: AUTH_JWT_SECRET is not set, so every API caller is an anonymous admin (the API listens beyond this host only with AUTH_MODE=none)',
      );
    }
    app.decorateRequest('principal', null as unknown as Principal);
    app.addHook('onRequest', async (request) => {
      const open = request.routeOptions.config?.role === undefined && isPublic(request.routeOptions.url);
      if (!secret) {
        request.principal = ANONYMOUS;
        return;
      }
      if (open) return;
      const token = bearerToken(request);
      if (!token) throw httpError(401, 'Missing bearer token: send Authorization: Bearer <jwt>');
      try {
        request.principal = verifyToken(token, secret);
      } catch (err) {
        if (err instanceof TokenError) throw httpError(401, err.message);
        throw err;
      }
      const needed = request.routeOptions.config?.role ?? (request.method === 'GET' ? 'viewer' : 'operator');
      if (!hasRole(request.principal.role, needed)) {
        throw httpError(403, `Role ${request.principal.role} may not do this; it needs ${needed} or higher`);
      }
    });
  },
  { name: 'auth' },
);

function bearerToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (header?.startsWith('Bearer ')) return header.slice('Bearer '.length).trim();
  if (request.routeOptions.config?.tokenInQuery) {
    const query = request.query as { access_token?: unknown } | undefined;
    if (typeof query?.access_token === 'string' && query.access_token !== '') return query.access_token;
  }
  return undefined;
}

const PUBLIC_ROUTES = ['/health', '/healthz', '/metrics', '/', '/console'];

function isPublic(url: string | undefined): boolean {
  return url === undefined || PUBLIC_ROUTES.includes(url) || url.startsWith('/docs');
}

import fp from 'fastify-plugin';
import { hasRole, TokenError, verifyToken, type Principal, type Role } from '../auth/jwt';
import { httpError } from '../http-error';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal;
  }
  interface FastifyContextConfig {
    /** Least role a route needs; GET routes default to viewer, everything else to operator. */
    role?: Role;
  }
}

const ANONYMOUS: Principal = { subject: 'anonymous', role: 'admin' };

/**
 * Bearer-token auth (HS256 JWT with a role and an optional tenant_id claim). Without a secret, auth is off: every
 * caller is an anonymous admin and a warning is logged at start.
 */
export default fp<{ secret?: string }>(
  async (app, { secret }) => {
    if (!secret) app.log.warn('AUTH IS OFF: AUTH_JWT_SECRET is not set, so every API caller is an anonymous admin');
    app.decorateRequest('principal', null as unknown as Principal);
    app.addHook('onRequest', async (request) => {
      const open = request.routeOptions.config?.role === undefined && isPublic(request.routeOptions.url);
      if (!secret) {
        request.principal = ANONYMOUS;
        return;
      }
      if (open) return;
      const header = request.headers.authorization;
      if (!header || !header.startsWith('Bearer ')) throw httpError(401, 'Missing bearer token: send Authorization: Bearer <jwt>');
      try {
        request.principal = verifyToken(header.slice('Bearer '.length).trim(), secret);
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

const PUBLIC_ROUTES = ['/health', '/healthz', '/metrics', '/', '/console'];

function isPublic(url: string | undefined): boolean {
  return url === undefined || PUBLIC_ROUTES.includes(url) || url.startsWith('/docs');
}

import fp from 'fastify-plugin';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { httpError } from '../http-error';

/** The header a same-origin page (the console) sends on every call; a cross-site form or simple request cannot. */
export const REQUESTED_BY_HEADER = 'x-requested-by';

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
const ALLOWED_METHODS = 'GET, POST, PUT, PATCH, DELETE';
const ALLOWED_HEADERS = ['authorization', 'content-type', REQUESTED_BY_HEADER, 'idempotency-key', 'last-event-id'];
const EXPOSED_HEADERS = ['location', 'retry-after', 'x-next-cursor'];

export interface BrowserGuardOptions {
  /** Exact origins allowed to call the API from their pages (API_CORS_ORIGINS); empty = CORS off. */
  corsOrigins: string[];
  /** Host names (no port) requests must be addressed to; undefined = any (see hostsToCheck in api/app.ts). */
  allowedHosts?: string[];
}

/**
 * What keeps a web page the operator happens to visit from acting on the API with the operator's reach (a token in
 * the console's storage is safe, but with auth off the loopback API trusts whoever connects):
 * - mutating methods take only `application/json` bodies (or none), so no HTML form can carry one;
 * - they need `Authorization: Bearer` or `X-Requested-By` (any value): custom headers force a CORS preflight, which
 *   only origins in API_CORS_ORIGINS pass. Applies with auth off too, where it is the only thing that does this.
 * CORS is off unless origins are listed: no Access-Control-Allow-Origin header, preflights answered 403.
 */
export default fp<BrowserGuardOptions>(
  async (app, { corsOrigins, allowedHosts }) => {
    const allowed = new Set(corsOrigins);
    const hosts = allowedHosts && new Set(allowedHosts.map((h) => h.toLowerCase()));

    // DNS rebinding: a page whose name an attacker re-points at 127.0.0.1 is same-origin with the loopback API, so
    // the rules below do not stop it; only the Host header it sends (the attacker's name) tells it apart.
    if (hosts) {
      app.addHook('onRequest', async (request) => {
        // HTTP/2 carries the host in the :authority pseudo-header, HTTP/1.1 in Host.
        const authority = request.headers[':authority'];
        const host = hostName(request.headers.host ?? (typeof authority === 'string' ? authority : ''));
        if (!hosts.has(host)) {
          throw httpError(
            421,
            `This API answers requests addressed to ${[...hosts].join(', ')}, not to "${host}" ` +
              '(add the name to API_ALLOWED_HOSTS if it is yours)',
          );
        }
      });
    }

    // onRequest, before auth: a preflight carries no credentials, so it must be answered before auth asks for them.
    app.addHook('onRequest', async (request, reply) => {
      const origin = request.headers.origin;
      const granted = origin !== undefined && allowed.has(origin);
      if (allowed.size > 0) reply.header('vary', 'Origin');
      if (granted) {
        reply.header('access-control-allow-origin', origin);
        reply.header('access-control-expose-headers', EXPOSED_HEADERS.join(', '));
      }
      if (request.method === 'OPTIONS' && request.headers['access-control-request-method'] !== undefined) {
        return answerPreflight(request, reply, granted);
      }
    });

    // preParsing runs after auth (a missing token stays a 401) and before the body is read.
    app.addHook('preParsing', async (request) => {
      // An unknown route changes nothing: its 404 names the route, which says more than a 403 would.
      if (!MUTATING.has(request.method) || request.is404) return;
      const what = `${request.method} ${request.routeOptions.url ?? request.url}`;
      const type = request.headers['content-type'];
      if (type !== undefined && mediaType(type) !== 'application/json') {
        throw httpError(415, `${what} accepts only application/json bodies (or no body); got content-type ${type}`);
      }
      if (type === undefined && hasBody(request)) {
        throw httpError(415, `${what} accepts only application/json bodies (or no body); this one has no content-type`);
      }
      const bearer = /^bearer\s+\S/i.test(request.headers.authorization ?? '');
      const requestedBy = request.headers[REQUESTED_BY_HEADER];
      if (!bearer && (typeof requestedBy !== 'string' || requestedBy.trim() === '')) {
        throw httpError(
          403,
          `${what} needs an Authorization: Bearer token or an X-Requested-By header (any value, e.g. X-Requested-By: ` +
            'crm-events-cli); without one, any web page could send it from the browser',
        );
      }
    });
  },
  { name: 'browser-guard' },
);

/** The host name of a Host header, lower case, without its port (IPv6 literals keep their brackets). */
export function hostName(header: string): string {
  const host = header.trim().toLowerCase();
  if (host.startsWith('[')) return host.slice(0, host.indexOf(']') + 1);
  const colon = host.indexOf(':');
  return colon < 0 ? host : host.slice(0, colon);
}

function answerPreflight(request: FastifyRequest, reply: FastifyReply, granted: boolean): FastifyReply {
  if (!granted) {
    const origin = request.headers.origin ?? '(no Origin header)';
    return reply.status(403).send({
      statusCode: 403,
      error: 'Forbidden',
      message: `CORS preflight refused: origin ${origin} is not listed in API_CORS_ORIGINS`,
    });
  }
  return reply
    .status(204)
    .header('access-control-allow-methods', ALLOWED_METHODS)
    .header('access-control-allow-headers', ALLOWED_HEADERS.join(', '))
    .header('access-control-max-age', '600')
    .send();
}

/** `application/json; charset=utf-8` → `application/json`. */
function mediaType(header: string): string {
  return header.split(';')[0].trim().toLowerCase();
}

function hasBody(request: FastifyRequest): boolean {
  const length = request.headers['content-length'];
  return request.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

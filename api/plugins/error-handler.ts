import fp from 'fastify-plugin';
import type { FastifyError } from 'fastify';
import { deterministicPgError } from '../../shared/db';
import { clientFields } from '../http-error';

/**
 * One error handler for the whole API: 4xx answers say what was wrong with the request; 5xx answers never carry a
 * stack, SQL or driver message (those go to the log with the request id).
 */
export default fp(
  async (app) => {
    app.setErrorHandler((err: FastifyError, request, reply) => {
      const status = err.statusCode && err.statusCode >= 400 ? err.statusCode : 500;
      if (err.validation) {
        return reply.status(400).send({ statusCode: 400, error: 'Bad Request', message: describeValidation(err) });
      }
      const fields = clientFields(err);
      if (status < 500 || fields) {
        if (status >= 500) request.log.warn({ err }, 'request not carried out');
        return reply
          .status(status)
          .send({ statusCode: status, error: httpError(status), message: err.message, ...fields });
      }
      const limit = beyondPostgresLimits(err);
      if (limit) {
        // Logged still: a class 22 may also be this service's own cast going wrong on some value.
        request.log.warn({ err }, 'Postgres refused the request for the data it reads');
        return reply.status(422).send({ statusCode: 422, error: httpError(422), message: limit });
      }
      request.log.error({ err }, 'request failed');
      const message = 'Internal error; see the service log for request ' + request.id;
      return reply.status(status).send({ statusCode: status, error: httpError(status), message });
    });
    app.setNotFoundHandler((request, reply) =>
      reply
        .status(404)
        .send({ statusCode: 404, error: 'Not Found', message: `Route ${request.method} ${request.url} not found` }),
    );
  },
  { name: 'error-handler' },
);

/**
 * A request Postgres cannot carry out on the data it would read, whatever the retry (shared/db.ts,
 * deterministicPgError): e.g. a payload filter walking every level with `$.**` over a stored payload nested deeper
 * than Postgres's stack allows (class 54), or a value a cast or a regular expression cannot take (class 22). A 422
 * naming it, not a 500: the request is valid, and a narrower one works.
 */
function beyondPostgresLimits(err: unknown): string | undefined {
  const refused = deterministicPgError(err);
  if (!refused) return undefined;
  const hint =
    refused.kind === 'program_limit_exceeded' ? '; narrow it (e.g. name the payload paths instead of $.**)' : '';
  return `Postgres cannot carry out this request on the stored data: ${refused.message} (SQLSTATE ${refused.sqlstate})${hint}`;
}

/** A 400 message naming the field and what was wrong with it (the unknown field, the allowed values). */
function describeValidation(err: FastifyError): string {
  const [first] = err.validation ?? [];
  if (!first) return err.message;
  const where = `${err.validationContext ?? 'request'}${first.instancePath || ''}`;
  const params = first.params as { additionalProperty?: string; allowedValues?: unknown[] };
  if (first.keyword === 'additionalProperties' && params.additionalProperty) {
    return `${where} has an unknown field "${params.additionalProperty}"`;
  }
  if (first.keyword === 'enum' && params.allowedValues) {
    return `${where} must be one of ${params.allowedValues.map((v) => JSON.stringify(v)).join(', ')}`;
  }
  return `${where} ${first.message ?? 'is invalid'}`;
}

const NAMES: Record<number, string> = {
  422: 'Unprocessable Entity',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  409: 'Conflict',
  410: 'Gone',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  421: 'Misdirected Request',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

function httpError(status: number): string {
  return NAMES[status] ?? (status >= 500 ? 'Server Error' : 'Client Error');
}

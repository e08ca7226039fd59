import Ajv, { type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import type { FastifySchema } from 'fastify';

type Part = 'body' | 'querystring' | 'params' | 'headers' | string;

/**
 * Request validation with two Ajv instances. Query strings, path params and headers arrive as text, so they are
 * coerced to the schema's types ("limit=5" → 5). JSON bodies are not: `{"ids": 5}` or `{"dry_run": "true"}` is a
 * wrong type and gets a 400, never a silently "fixed" replay. Unknown fields are refused everywhere.
 */
export function requestValidator() {
  const make = (coerceTypes: boolean | 'array') => {
    const ajv = new Ajv({ coerceTypes, removeAdditional: false, useDefaults: true, allErrors: false, strict: false });
    addFormats(ajv);
    // RFC 3339 allows year 0000, Postgres has no year 0 (and the journal nothing before 1970): a date-time is also a
    // year from 0001, so that such a value is a 400 naming the field, not a database error at every retry.
    const rfc3339 = ajv.formats['date-time'] as { validate: (value: string) => boolean };
    ajv.addFormat('date-time', {
      type: 'string',
      validate: (value: string) => rfc3339.validate(value) && !/^0000/.test(value),
    });
    return ajv;
  };
  const strict = make(false);
  const coercing = make('array');
  return ({ schema, httpPart }: { schema: FastifySchema; httpPart?: Part }): ValidateFunction =>
    (httpPart === 'body' ? strict : coercing).compile(schema as object);
}

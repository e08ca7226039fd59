import { Type } from '@sinclair/typebox';
import { payloadFilterProblem } from '../repository/payload-filter';
import type { Queryable } from '../repository/queryable';
import { httpError } from './http-error';

/** The `payload_filter` field of /events, its export and range replays: a JSONPath predicate on the payload. */
export const PayloadFilter = Type.String({
  minLength: 1,
  maxLength: 2000,
  description:
    'JSONPath predicate evaluated by Postgres on each payload, e.g. $.source == "trade-show" && $.lead_id > 200',
});

/** Refuses a payload filter Postgres cannot use, with a 400 naming `field` and Postgres' reason. */
export async function checkPayloadFilter(db: Queryable, field: string, expression: string | undefined): Promise<void> {
  if (expression === undefined) return;
  const problem = await payloadFilterProblem(db, expression);
  if (problem !== undefined) {
    throw httpError(400, `${field} is not a valid JSONPath predicate: ${problem} (got ${JSON.stringify(expression)})`);
  }
}

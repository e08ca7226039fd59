import { Type, type Static, type TObject } from '@sinclair/typebox';
import type { FastifyRequest } from 'fastify';
import type { EventFilter } from '../repository/event-journal';
import type { Queryable } from '../repository/queryable';
import { httpError } from './http-error';
import { checkPayloadFilter, PayloadFilter } from './payload-filter';
import { scopedTenant } from './tenant-scope';

/** The query parameters GET /events and GET /events/export filter on. */
export const EventFilterQuery = {
  tenant_id: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  topic: Type.Optional(Type.String({ minLength: 1, maxLength: 249 })),
  since: Type.Optional(Type.String({ format: 'date-time' })),
  until: Type.Optional(Type.String({ format: 'date-time' })),
  replayed: Type.Optional(Type.Boolean()),
  payload_filter: Type.Optional(PayloadFilter),
};
type EventFilterParams = Static<TObject<typeof EventFilterQuery>>;

/**
 * The repository filter of a request: the tenant pinned by a tenant-scoped token (asking for another is a 403), the
 * time bounds in order and the payload filter checked by Postgres (400s naming the problem).
 */
export async function eventFilterOf(
  db: Queryable,
  request: FastifyRequest,
  q: EventFilterParams,
): Promise<EventFilter> {
  if (q.since && q.until && Date.parse(q.since) >= Date.parse(q.until)) {
    throw httpError(400, `querystring/since must be before querystring/until (got ${q.since} .. ${q.until})`);
  }
  const tenantId = scopedTenant(request, q.tenant_id);
  await checkPayloadFilter(db, 'querystring/payload_filter', q.payload_filter);
  return {
    tenantId,
    topic: q.topic,
    since: q.since,
    until: q.until,
    replayed: q.replayed,
    payloadFilter: q.payload_filter,
  };
}

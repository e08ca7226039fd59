import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { getEvent, listEvents, replaysOf } from '../../repository/event-journal';
import { erasedEventError } from '../erased';
import type { Pool } from '../../shared/db';
import { EventFilterQuery, eventFilterOf } from '../event-filter';
import { httpError } from '../http-error';
import { keysetPage } from '../route-helpers';
import { errorResponses, EventSummary, NullableInteger, NullableString, Id } from '../schemas';
import { canSee, scopedTenant } from '../tenant-scope';

const EventDetail = Type.Composite([
  EventSummary,
  Type.Object({
    payload: Type.Record(Type.String(), Type.Unknown()),
    kafka_partition: NullableInteger,
    kafka_offset: NullableInteger,
    kafka_key: NullableString,
    lineage: Type.Object({
      replayed_from: Type.Union([EventSummary, Type.Null()]),
      replays: Type.Array(EventSummary),
    }),
  }),
]);
const limit = (fallback: number) => Type.Integer({ minimum: 1, maximum: 1000, default: fallback });
const forbidden = { 403: Type.Ref('ErrorBody'), 404: Type.Ref('ErrorBody') };
const gone = { 410: Type.Ref('ErrorBody') };

/** Journal read routes. A tenant-scoped token only ever sees its tenant's rows. */
const eventRoutes: FastifyPluginAsyncTypebox<{ pool: Pool }> = async (app, { pool }) => {
  app.get(
    '/events/latest',
    {
      schema: {
        tags: ['events'],
        summary: 'Newest journal rows first; use an id from here to replay',
        querystring: Type.Object({ limit: limit(20) }, { additionalProperties: false }),
        response: { 200: Type.Array(EventSummary), ...errorResponses },
      },
    },
    async (request) => listEvents(pool, { tenantId: scopedTenant(request), limit: request.query.limit }),
  );

  app.get(
    '/events',
    {
      schema: {
        tags: ['events'],
        summary:
          'Journal rows filtered by tenant, topic, time, replay flag and a JSONPath payload filter; newest first, keyset pages',
        querystring: Type.Object(
          {
            ...EventFilterQuery,
            cursor: Type.Optional(Id),
            limit: limit(50),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({ items: Type.Array(EventSummary), next_cursor: NullableInteger }),
          ...errorResponses,
          ...forbidden,
        },
      },
    },
    async (request) => {
      const q = request.query;
      const filter = await eventFilterOf(pool, request, q);
      const rows = await listEvents(pool, { ...filter, before: q.cursor, limit: q.limit + 1 });
      return keysetPage(rows, q.limit);
    },
  );

  app.get(
    '/events/:id',
    {
      schema: {
        tags: ['events'],
        summary: 'One journal row with its payload and lineage (the event it replays, and its replays)',
        params: Type.Object({ id: Id }),
        response: { 200: EventDetail, ...errorResponses, ...forbidden, ...gone },
      },
    },
    async (request) => {
      const row = await getEvent(pool, request.params.id);
      if (!row) throw await erasedEventError(pool, request.params.id);
      if (!canSee(request, row.tenant_id))
        throw httpError(404, `Event ${request.params.id} not found in event_journal`);
      const fromId = Number(row.payload._replayed_from_event_id);
      const from = row.replay_count > 0 && Number.isSafeInteger(fromId) ? await getEvent(pool, fromId) : undefined;
      const replays = (await replaysOf(pool, row.id)).filter((r) => canSee(request, r.tenant_id));
      return { ...row, lineage: { replayed_from: from && canSee(request, from.tenant_id) ? from : null, replays } };
    },
  );
};

export default eventRoutes;

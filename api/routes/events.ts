import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { latestEvents } from '../../repository/event-journal';
import type { Pool } from '../../shared/db';
import { errorResponses, NullableString, Timestamp } from '../schemas';

const EventSummary = Type.Object({
  id: Type.Integer(),
  tenant_id: Type.String(),
  topic: Type.String(),
  received_at: Timestamp,
  replay_count: Type.Integer(),
  replay_source: NullableString,
});

/** Journal read routes. */
const eventRoutes: FastifyPluginAsyncTypebox<{ pool: Pool }> = async (app, { pool }) => {
  app.get(
    '/events/latest',
    {
      schema: {
        tags: ['events'],
        summary: 'Newest journal rows first; use an id from here to replay',
        querystring: Type.Object(
          { limit: Type.Integer({ minimum: 1, maximum: 1000, default: 20 }) },
          { additionalProperties: false },
        ),
        response: { 200: Type.Array(EventSummary), ...errorResponses },
      },
    },
    async (request) => latestEvents(pool, request.query.limit),
  );
};

export default eventRoutes;

import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { latestDlqEntries } from '../../repository/event-dlq';
import type { Pool } from '../../shared/db';
import { errorResponses, NullableInteger, NullableString, Timestamp } from '../schemas';

const DlqEntry = Type.Object({
  id: Type.Integer(),
  topic: Type.String(),
  tenant_id: NullableString,
  reason: Type.String(),
  error: Type.String(),
  kafka_partition: NullableInteger,
  kafka_offset: NullableInteger,
  received_at: Timestamp,
});

/** Dead-letter routes. */
const dlqRoutes: FastifyPluginAsyncTypebox<{ pool: Pool }> = async (app, { pool }) => {
  app.get(
    '/dlq',
    {
      schema: {
        tags: ['dlq'],
        summary: 'Records the sink could not journal, newest first, with the error',
        querystring: Type.Object(
          { limit: Type.Integer({ minimum: 1, maximum: 1000, default: 50 }) },
          { additionalProperties: false },
        ),
        response: { 200: Type.Array(DlqEntry), ...errorResponses },
      },
    },
    async (request) => latestDlqEntries(pool, request.query.limit),
  );
};

export default dlqRoutes;

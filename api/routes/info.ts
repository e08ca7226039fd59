import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Config } from '../../shared/config';

/** GET / (service info) and GET /healthz (liveness: the process answers), as the original crm-events service had. */
const infoRoutes: FastifyPluginAsyncTypebox<{ config: Pick<Config, 'kafka' | 'temporal'> }> = async (
  app,
  { config },
) => {
  app.get(
    '/',
    {
      schema: {
        tags: ['health'],
        summary: 'Service info',
        response: {
          200: Type.Object({
            ok: Type.Boolean(),
            service: Type.String(),
            status: Type.String(),
            kafka_brokers: Type.String(),
            topics: Type.Array(Type.String()),
            group: Type.String(),
            temporal_ui: Type.String(),
            temporal_namespace: Type.String(),
            links: Type.Record(Type.String(), Type.String()),
          }),
        },
      },
    },
    async () => ({
      ok: true,
      service: 'crm-events-sink',
      status: 'ready',
      kafka_brokers: config.kafka.brokers.join(','),
      topics: config.kafka.topics,
      group: config.kafka.groupId,
      temporal_ui: config.temporal.uiUrl,
      temporal_namespace: config.temporal.namespace,
      links: { health: '/health', stream: '/crm-events', console: '/console', docs: '/docs', metrics: '/metrics' },
    }),
  );
  app.get(
    '/healthz',
    { schema: { tags: ['health'], summary: 'Liveness', response: { 200: Type.Object({ ok: Type.Boolean() }) } } },
    async () => ({ ok: true }),
  );
};

export default infoRoutes;

import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Config } from '../shared/config';
import type { Pool } from '../shared/db';
import type { Logger } from '../shared/logger';
import type { Metrics } from '../shared/metrics';
import errorHandler from './plugins/error-handler';
import requestMetrics from './plugins/request-metrics';
import dlqRoutes from './routes/dlq';
import eventRoutes from './routes/events';
import healthRoutes, { type HealthCheck } from './routes/health';
import { ErrorBody } from './schemas';

export interface AppDeps {
  config: Pick<Config, 'api'>;
  pool: Pool;
  metrics: Metrics;
  log: Logger;
  healthChecks: Record<string, HealthCheck>;
}

/** Builds the API without listening: the entry point listens, tests use app.inject(). */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.log as FastifyBaseLogger,
    disableRequestLogging: true,
    bodyLimit: deps.config.api.bodyLimitBytes,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', allErrors: false } },
  }).withTypeProvider<TypeBoxTypeProvider>();

  app.addSchema(ErrorBody);
  await app.register(swagger, {
    openapi: {
      info: {
        title: 'crm-events-sink',
        description: 'Journal and replay service for ApexFlow CRM domain events',
        version: '0.1.0',
      },
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  await app.register(errorHandler);
  await app.register(requestMetrics, { metrics: deps.metrics });
  await app.register(healthRoutes, { checks: deps.healthChecks });
  await app.register(eventRoutes, { pool: deps.pool });
  await app.register(dlqRoutes, { pool: deps.pool });
  await app.ready();
  return app;
}

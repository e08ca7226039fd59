import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { createArchiveStore, type ArchiveStore } from '../archive';
import type { Config } from '../shared/config';
import { createKafka, createTopicCatalog, type TopicCatalog } from '../shared/kafka';
import type { Pool } from '../shared/db';
import type { Logger } from '../shared/logger';
import type { Metrics } from '../shared/metrics';
import type { TlsPair } from '../shared/tls';
import { authSettings } from './auth/jwt';
import auth from './plugins/auth';
import browserGuard from './plugins/browser-guard';
import { closeConnectionsOnClose } from './plugins/close-connections';
import errorHandler from './plugins/error-handler';
import replayRateLimit from './plugins/replay-rate-limit';
import requestMetrics from './plugins/request-metrics';
import kafkaTopics from './plugins/kafka-topics';
import answerAtClose from './plugins/answer-at-close';
import temporal, { createTemporalGateway, type TemporalGateway } from './plugins/temporal';
import archiveRoutes from './routes/archive';
import consoleRoutes from './routes/console';
import maintenanceRoutes from './routes/maintenance';
import retentionRoutes from './routes/retention';
import notificationRoutes from './routes/notifications';
import dlqRoutes from './routes/dlq';
import dlqScheduleRoutes from './routes/dlq-schedule';
import dlqRepairRoutes from './routes/dlq-repair';
import dlqTriageRoutes from './routes/dlq-triage';
import erasureRoutes from './routes/erasure';
import eventRoutes from './routes/events';
import eventExportRoutes from './routes/events-export';
import healthRoutes, { type HealthCheck } from './routes/health';
import infoRoutes from './routes/info';
import streamRoutes from './routes/stream';
import { JournalFeed } from './live/journal-feed';
import replayRoutes from './routes/replay';
import replaysRoutes from './routes/replays';
import { ErrorBody } from './schemas';
import { requestValidator } from './validation';

export interface AppDeps {
  config: Pick<
    Config,
    | 'api'
    | 'temporal'
    | 'stream'
    | 'kafka'
    | 'databaseUrl'
    | 'dlqRetry'
    | 'replay'
    | 'journal'
    | 'archive'
    | 'erasure'
    | 'notifications'
    | 'ingest'
    | 'lineageKey'
  >;
  pool: Pool;
  metrics: Metrics;
  log: Logger;
  healthChecks: Record<string, HealthCheck>;
  /** Defaults to a lazily connected client of config.temporal. */
  temporal?: TemporalGateway;
  /** Which topics Kafka has (replay targets are checked); defaults to a catalog on a client of config.kafka. */
  topics?: TopicCatalog;
  /** Serve HTTPS with this pair: HTTP/2 negotiated by ALPN, HTTP/1.1 for clients without it. Plain HTTP/1.1 without. */
  tls?: TlsPair;
  /** The journal archive (erasure's dry run reads it); defaults to one made from config.archive, closed with the app. */
  archive?: ArchiveStore;
}

/**
 * The Host names the API answers to (DNS rebinding): those listed in API_ALLOWED_HOSTS; with auth off and no list,
 * this host's own names (the API then listens on loopback only). With auth on, or open on purpose (AUTH_MODE=none),
 * and no list: any name — a rebound page has no token, and an open API is open.
 */
function hostsToCheck(api: Config['api']): string[] | undefined {
  if (api.allowedHosts.length) return api.allowedHosts;
  if (api.authMode === 'jwt' || api.openOnPurpose) return undefined;
  const own = ['localhost', '127.0.0.1', '[::1]'];
  return isWildcard(api.host) ? own : [...new Set([...own, api.host.includes(':') ? `[${api.host}]` : api.host])];
}

const isWildcard = (host: string) => host === '0.0.0.0' || host === '::' || host === '';

/** Builds the API without listening: the entry point listens, tests use app.inject(). */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const { config, pool } = deps;
  const options = {
    loggerInstance: deps.log as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }), // per-request lines would drown the service's own
    forceCloseConnections: true, // live-stream clients would otherwise hold close() open
    bodyLimit: config.api.bodyLimitBytes,
  };
  // Over HTTP/2 a browser multiplexes every tab's live stream on one connection; over HTTP/1.1 it opens at most six
  // per host, so a seventh console tab would wait for one of them to close.
  const server = deps.tls
    ? (Fastify({
        ...options,
        http2: true,
        https: { allowHTTP1: true, cert: deps.tls.cert, key: deps.tls.key },
      }) as unknown as FastifyInstance)
    : Fastify(options);
  const app = server.withTypeProvider<TypeBoxTypeProvider>();
  await app.register(answerAtClose); // its preClose lets the requests in flight answer before connections drop
  if (deps.tls) closeConnectionsOnClose(server);
  app.setValidatorCompiler(requestValidator());

  app.addSchema(ErrorBody);
  await app.register(swagger, {
    openapi: {
      info: {
        title: 'crm-events-sink',
        description: 'Journal and replay service for ApexFlow CRM domain events',
        version: '0.1.0',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
      security: [{ bearer: [] }],
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  await app.register(errorHandler);
  await app.register(requestMetrics, { metrics: deps.metrics });
  await app.register(browserGuard, { corsOrigins: config.api.corsOrigins, allowedHosts: hostsToCheck(config.api) });
  await app.register(auth, { settings: authSettings(config.api) });
  await app.register(replayRateLimit, {
    perMinute: config.api.replayRateLimitPerMinute,
    pool,
    idempotencyKeyTtlSeconds: config.api.idempotencyKeyTtlSeconds,
  });
  await app.register(temporal, { gateway: deps.temporal ?? createTemporalGateway(config) });
  const catalog =
    deps.topics ??
    createTopicCatalog(createKafka(config.kafka.brokers, `${config.kafka.clientId}-api`, deps.log), { log: deps.log });
  await app.register(kafkaTopics, { catalog });
  await app.register(healthRoutes, { checks: deps.healthChecks });
  await app.register(infoRoutes, { config });
  const feed = new JournalFeed(config.databaseUrl, deps.log.child({ module: 'stream' }));
  await feed.start();
  app.addHook('onClose', () => feed.close());
  await app.register(streamRoutes, { pool, feed, metrics: deps.metrics, config });
  await app.register(eventRoutes, { pool });
  await app.register(eventExportRoutes, { pool, metrics: deps.metrics, poolSize: config.api.databasePoolSize });
  await app.register(dlqRoutes, { pool, config });
  await app.register(dlqScheduleRoutes, { config });
  await app.register(dlqRepairRoutes, { pool, config });
  await app.register(dlqTriageRoutes, { pool, config });
  await app.register(replayRoutes, { pool, config });
  await app.register(replaysRoutes, { pool, config });
  const archive = deps.archive ?? createArchiveStore(config.archive);
  if (!deps.archive) app.addHook('onClose', () => archive.close());
  await app.register(erasureRoutes, { pool, archive, config });
  await app.register(retentionRoutes, { pool, config });
  await app.register(notificationRoutes, { pool, config });
  await app.register(maintenanceRoutes, { pool, config });
  await app.register(archiveRoutes, { archive, config });
  await app.register(consoleRoutes);
  await app.ready();
  return app;
}

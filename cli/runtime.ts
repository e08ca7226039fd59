import { loadConfig, type Config } from '../shared/config';
import { createPool, type Pool } from '../shared/db';
import { createKafka } from '../shared/kafka';
import { createLogger, type Logger } from '../shared/logger';
import { createMetrics, initAlertSeries, type Metrics } from '../shared/metrics';
import { countDlqEntries } from '../repository/event-dlq';
import type { Kafka } from 'kafkajs';

/** What every long-running subcommand shares: validated config, one logger, one pool, one Kafka client, metrics. */
export interface Runtime {
  config: Config;
  log: Logger;
  pool: Pool;
  kafka: Kafka;
  metrics: Metrics;
}

export function createRuntime(component: string, config: Config = loadConfig()): Runtime {
  const log = createLogger(config.logLevel, component);
  const pool = createPool(config.databaseUrl, config.databasePoolSize, log);
  const metrics = createMetrics(config.metrics.tenantLabelLimit, { dlqSize: () => countDlqEntries(pool) });
  initAlertSeries(metrics);
  return { config, log, pool, kafka: createKafka(config.kafka.brokers, config.kafka.clientId, log), metrics };
}

type Stopper = () => Promise<unknown>;

/**
 * Waits for SIGTERM/SIGINT, then runs the stoppers in order (intake first, pools last). A second signal exits at
 * once. Resolves when everything has stopped; the process exits at the latest 2 s later.
 */
export function untilShutdown(log: Logger, stoppers: Stopper[]): Promise<void> {
  return new Promise((resolve) => {
    const shutdown = async (signal: string) => {
      log.info({ signal }, 'Shutting down: finishing work in flight');
      process.once(signal, () => process.exit(130));
      for (const stop of stoppers) {
        await stop().catch((err: Error) => log.error({ err }, 'error during shutdown'));
      }
      log.info('Stopped');
      // Everything is closed; should a library still hold a timer or socket open, do not hang around for it.
      setTimeout(() => {
        log.warn({ open: process.getActiveResourcesInfo() }, 'Still running 2 s after stopping; exiting');
        process.exit(process.exitCode ?? 0);
      }, 2000).unref();
      resolve();
    };
    process.once('SIGTERM', () => void shutdown('SIGTERM'));
    process.once('SIGINT', () => void shutdown('SIGINT'));
  });
}

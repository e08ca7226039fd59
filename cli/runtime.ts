import { loadConfig, type Config } from '../shared/config';
import { createPool, type Pool } from '../shared/db';
import { createKafka } from '../shared/kafka';
import { createLogger, type Logger } from '../shared/logger';
import { exitMarginMs, startStopClock } from '../shared/stop-clock';
import { countDefaultPartitionRows, countPartitionsAhead } from '../repository/journal-partitions';
import { lastMaintenanceSuccess } from '../repository/lifecycle-audit';
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
  const pool = createPool(config.databaseUrl, config.databasePoolSize, log, config.databaseStatementTimeoutMs);
  const metrics = createMetrics(config.metrics.tenantLabelLimit, {
    dlqSize: () => countDlqEntries(pool),
    journalDefaultRows: () => countDefaultPartitionRows(pool),
    journalPartitionsAhead: () => countPartitionsAhead(pool),
    maintenanceLastSuccess: () => lastMaintenanceSuccess(pool),
  });
  initAlertSeries(metrics);
  return { config, log, pool, kafka: createKafka(config.kafka.brokers, config.kafka.clientId, log), metrics };
}

/** One step of a graceful stop; a named one is named in the log should it not finish in time. */
export type Stopper = (() => Promise<unknown>) | { name: string; stop: () => Promise<unknown> };

/** What a stopper is called in the log: its name, else its function's name, else its place in the order. */
function stopperName(stopper: Stopper, index: number): string {
  if (typeof stopper !== 'function') return stopper.name;
  return stopper.name && stopper.name !== 'stop' ? stopper.name : `stopper ${index + 1}`;
}

/** The first SIGTERM/SIGINT a process receives, caught from the moment it is watched. */
export interface StopSignal {
  received: Promise<{ signal: string; at: number }>;
  /** Called when the graceful stop begins: the start is over, so the start's own deadline no longer applies. */
  claim(): void;
}

/**
 * Catches SIGTERM/SIGINT from now on. A service watches before it starts anything: a signal that arrives while it is
 * still starting (an orchestrator's rolling restart, Ctrl-C) would otherwise kill it without a graceful stop; caught,
 * it stops the service in order as soon as the start has finished. A start that does not finish within `timeoutMs`
 * of the signal (say, waiting for a broker that is down) exits with code 1, and a second signal exits at once.
 */
export function watchStopSignals(timeoutMs: number = loadConfig().shutdownTimeoutMs): StopSignal {
  let startDeadline: NodeJS.Timeout | undefined;
  let claimed = false;
  const received = new Promise<{ signal: string; at: number }>((resolve) => {
    const caught = (signal: string) => {
      process.removeListener('SIGTERM', onTerm);
      process.removeListener('SIGINT', onInt);
      if (!claimed) {
        process.once(signal, () => process.exit(130));
        startDeadline = setTimeout(() => {
          process.stderr.write(`${signal} while starting, and the start did not finish within ${timeoutMs} ms\n`);
          process.exit(1);
        }, timeoutMs);
      }
      resolve({ signal, at: Date.now() });
    };
    const onTerm = () => caught('SIGTERM');
    const onInt = () => caught('SIGINT');
    process.once('SIGTERM', onTerm);
    process.once('SIGINT', onInt);
  });
  return {
    received,
    claim: () => {
      claimed = true;
      clearTimeout(startDeadline);
    },
  };
}

/** How long a stopped process waits for what a library still holds open before it exits anyway. */
const AFTER_STOP_WAIT_MS = 2000;
/** Logged when a process that stopped is still held open by a library's timer or socket, as it exits anyway. */
export const STILL_RUNNING_AFTER_STOP = 'Still running after stopping; exiting';
/**
 * How long a process that stopped at `now` may wait before it exits: AFTER_STOP_WAIT_MS, and ending a margin before
 * the deadline (SHUTDOWN_TIMEOUT after the signal; exitMarginMs) so that the exit itself, and a supervisor's clock,
 * are within it.
 */
export function afterStopWaitMs(signalAt: number, timeoutMs: number, now: number): number {
  return Math.max(0, Math.min(AFTER_STOP_WAIT_MS, signalAt + timeoutMs - exitMarginMs(timeoutMs) - now));
}

/**
 * Waits for SIGTERM/SIGINT (caught since `signals` was watched), then runs the stoppers in order (intake first,
 * pools last). A second signal exits at once. Resolves when everything has stopped; the process exits at the latest
 * AFTER_STOP_WAIT_MS later, and never past the deadline (EXIT_MARGIN_MS before it).
 *
 * The whole stop is bounded by `timeoutMs` (SHUTDOWN_TIMEOUT): past it the process logs which stoppers had not
 * finished and the resources still open, and exits with code 1. Nothing is lost by that exit: the consumer commits
 * offsets only after Postgres committed, so a batch cut short is consumed again by the next process.
 */
export function untilShutdown(
  log: Logger,
  stoppers: Stopper[],
  timeoutMs: number = loadConfig().shutdownTimeoutMs,
  signals: StopSignal = watchStopSignals(timeoutMs),
): Promise<void> {
  signals.claim(); // started: from here this function bounds the stop
  return new Promise((resolve) => {
    const shutdown = async ({ signal, at }: { signal: string; at: number }) => {
      log.info({ signal, timeout_ms: timeoutMs }, 'Shutting down: finishing work in flight');
      startStopClock(at, timeoutMs); // from here the stoppers' bounded waits end before the deadline
      if (process.listenerCount(signal) === 0) process.once(signal, () => process.exit(130));
      const names = stoppers.map(stopperName);
      let current = 0;
      const deadline = setTimeout(
        () => {
          log.error(
            {
              timeout_ms: timeoutMs,
              stopping: names[current],
              not_started: names.slice(current + 1),
              open: process.getActiveResourcesInfo(),
            },
            `Shutdown did not finish within ${timeoutMs} ms: ${names[current]} was still stopping; exiting`,
          );
          process.exit(1);
        },
        Math.max(0, at + timeoutMs - Date.now()),
      ); // counted from the signal, which may have come while starting
      for (; current < stoppers.length; current++) {
        const stopper = stoppers[current];
        const stop = typeof stopper === 'function' ? stopper : stopper.stop;
        await stop().catch((err: Error) => log.error({ err, stopper: names[current] }, 'error during shutdown'));
      }
      clearTimeout(deadline);
      log.info('Stopped');
      // Everything is closed; should a library still hold a timer or socket open (a Kafka client abandoned while its
      // broker does not answer), do not hang around for it, and never past the deadline a supervisor counts on.
      const waitMs = afterStopWaitMs(at, timeoutMs, Date.now());
      setTimeout(() => {
        log.warn({ open: process.getActiveResourcesInfo(), waited_ms: waitMs }, STILL_RUNNING_AFTER_STOP);
        process.exit(process.exitCode ?? 0);
      }, waitMs).unref();
      resolve();
    };
    void signals.received.then(shutdown);
  });
}

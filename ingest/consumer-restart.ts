import type { ConsumerRestartReason } from '../journal/kinds';
import type { Logger } from '../shared/logger';
import type { Metrics } from '../shared/metrics';
import { disconnectWithin } from '../shared/kafka';
import { settleWithin, shareOf } from '../shared/timeout';
import { IngestStartInterrupted } from './group-start';

/**
 * Replacing the ingest process's Kafka consumer by a fresh one, for whoever finds it dead or hung: the watchdog
 * (a partition stalled, ingest/watchdog.ts) and the consumer's own crash listener (kafkajs gave up on it without
 * restarting it, ingest/consumer.ts). Offsets are committed only after the journal committed, so the fresh consumer
 * resumes at the committed offsets and the journal sets aside what it had journaled already (invariant 2).
 * Bounded: a disconnect that hangs is abandoned, and a fresh consumer that is not running in time exits the process
 * (crash-only: the supervisor starts a new one). One restart at a time: a second request joins the one in flight.
 */

/** What a restart acts on: the ingest consumer (ingest/consumer.ts); tests pass fakes. */
export interface RestartableConsumer {
  /** Retires the running Kafka consumer and disconnects it; may hang (the restart gives up waiting). */
  disconnect(): Promise<void>;
  /** Creates a fresh Kafka consumer in the same group and runs it. */
  startFresh(): Promise<void>;
}

/**
 * How long a Kafka consumer's disconnect is waited for, by a restart and by ingest's stop. kafkajs's disconnect waits
 * for a group join in progress, and a join waits for every member: with one member frozen, until that member's
 * session expires (KAFKA_SESSION_TIMEOUT_MS, 30 s by default).
 */
export const CONSUMER_DISCONNECT_TIMEOUT_MS = 10_000;

/** The most the stoppers after ingest's (metrics server, lag monitor 2 s, Postgres pool 5 s) take, with some room. */
const AFTER_CONSUMER_STOP_MS = 8_000;

/**
 * The consumer's disconnect bound when the process stops: what SHUTDOWN_TIMEOUT leaves after AFTER_CONSUMER_STOP_MS,
 * at least a third of it, at most CONSUMER_DISCONNECT_TIMEOUT_MS; so the stoppers after it fit in the rest even when
 * the broker does not answer, while a healthy consumer gets as long as can be to leave its group (a member that
 * does not leave holds its partitions for its session). Without a SHUTDOWN_TIMEOUT, the ceiling.
 */
export function stopDisconnectTimeoutMs(shutdownTimeoutMs?: number): number {
  return shareOf(shutdownTimeoutMs, 3, CONSUMER_DISCONNECT_TIMEOUT_MS, AFTER_CONSUMER_STOP_MS);
}

/** How long a fresh consumer has to be running, by default. */
export const RESTART_START_TIMEOUT_MS = 60_000;

export interface ConsumerRestarterOptions {
  consumer: RestartableConsumer;
  metrics: Pick<Metrics, 'consumerRestarts'>;
  log: Logger;
  /** A disconnect still running after this long is abandoned (default CONSUMER_DISCONNECT_TIMEOUT_MS). */
  disconnectTimeoutMs?: number;
  /** A fresh consumer not running after this long exits the process (default RESTART_START_TIMEOUT_MS). */
  startTimeoutMs?: number;
  /** How the process exits when a restart fails (default process.exit). */
  exit?: (code: number) => void;
}

export interface ConsumerRestarter {
  /** Counts the restart by reason, disconnects, starts a fresh consumer; resolves when done (or given up). */
  restart(reason: ConsumerRestartReason, detail?: Record<string, unknown>): Promise<void>;
  /** No more restarts; one in flight neither starts a fresh consumer nor exits (the shutdown stops ingest). */
  stop(): void;
}

export function createConsumerRestarter(opts: ConsumerRestarterOptions): ConsumerRestarter {
  const { consumer, metrics, log } = opts;
  const disconnectTimeoutMs = opts.disconnectTimeoutMs ?? CONSUMER_DISCONNECT_TIMEOUT_MS;
  const startTimeoutMs = opts.startTimeoutMs ?? RESTART_START_TIMEOUT_MS;
  const exit = opts.exit ?? ((code: number) => process.exit(code));
  let stopped = false;
  let inFlight: Promise<void> | undefined;

  const run = async (reason: ConsumerRestartReason, detail: Record<string, unknown>) => {
    metrics.consumerRestarts.inc({ reason });
    await disconnectWithin(consumer.disconnect(), disconnectTimeoutMs, log, 'The old Kafka consumer', { reason });
    if (stopped) return;
    const started = await settleWithin(consumer.startFresh(), startTimeoutMs);
    // A stop asked for while the fresh one was starting ended its start: the shutdown stops ingest.
    if (stopped || started instanceof IngestStartInterrupted) return;
    if (started !== 'done') {
      const why = started === 'timeout' ? `not running within ${startTimeoutMs} ms` : started.message;
      log.fatal(
        { reason, ...detail, err: why, timeout_ms: startTimeoutMs },
        `Could not restart the Kafka consumer (${why}); exiting with code 1 so that the process is restarted`,
      );
      exit(1);
      return;
    }
    log.info({ reason, ...detail }, `Kafka consumer restarted (${reason})`);
  };

  return {
    restart: (reason, detail = {}) => {
      if (stopped) return Promise.resolve();
      inFlight ??= run(reason, detail).finally(() => (inFlight = undefined));
      return inFlight;
    },
    stop: () => {
      stopped = true;
    },
  };
}

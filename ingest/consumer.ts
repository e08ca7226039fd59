import type { Consumer, EachBatchPayload, Kafka } from 'kafkajs';
import type { Config } from '../shared/config';
import type { Pool } from '../shared/db';
import type { Logger } from '../shared/logger';
import type { Metrics } from '../shared/metrics';
import { countBy } from '../shared/count-by';
import { ConfigError } from '../shared/errors';
import { disconnectAdmin, disconnectWithin, missingTopics } from '../shared/kafka';
import { shareOf, untilAborted } from '../shared/timeout';
import { initPartitionSeries } from '../shared/metrics';
import { appendBatch, type AppendOutcome } from '../journal/append';
import { loadLineageKey, type LineageKey } from '../journal/lineage';
import { parseRecord } from '../journal/record';
import type { LagMonitor } from './lag-monitor';
import { accountBatch, reportBatch } from './report-batch';
import { RESTART_START_TIMEOUT_MS, createConsumerRestarter, stopDisconnectTimeoutMs } from './consumer-restart';
import { startWatchdog, type AssignedPartition } from './watchdog';
import { groupStartDeadlineMs, IngestStartInterrupted, pinGroupStart } from './group-start';

export interface IngestDeps {
  kafka: Kafka;
  pool: Pool;
  metrics: Metrics;
  log: Logger;
  /** With shutdownTimeoutMs (SHUTDOWN_TIMEOUT), the stop's own waits take a share of it (stopDisconnectTimeoutMs). */
  config: Pick<Config, 'kafka' | 'ingest' | 'lineageKey'> & Partial<Pick<Config, 'shutdownTimeoutMs'>>;
  /** Called after each batch is committed in Postgres (the live stream hooks in here). */
  onJournaled?: (outcome: AppendOutcome) => void;
  /** The process's lag monitor: given it, and INGEST_WATCHDOG_SECONDS above 0, a watchdog restarts a hung consumer. */
  lagMonitor?: Pick<LagMonitor, 'stalled' | 'lastRead'>;
  /**
   * Aborted when the process is asked to stop: a start still waiting to commit where the group starts (which can take
   * longer than SHUTDOWN_TIMEOUT) gives up, and startIngest rejects with IngestStartInterrupted, having consumed
   * nothing. The rest of a start is short and finishes; the stop follows it.
   */
  stopRequested?: AbortSignal;
}

export interface IngestService {
  /** The Kafka consumer running now; the watchdog replaces it by a fresh one when it restarts it. */
  consumer(): Consumer;
  /** The partitions of the consumer's last group join; empty before it joined. */
  assignment(): AssignedPartition[];
  /**
   * True while Postgres refuses writes and ingestion is paused, retrying. This is the only deliberate pause the
   * watchdog knows of: a partition paused any other way (consumer().pause()) looks hung to it.
   */
  isPaused(): boolean;
  /**
   * Stops the watchdog, finishes the batch in flight, commits it, and leaves the group; gives up waiting for the
   * consumer after stopDisconnectTimeoutMs (a third of SHUTDOWN_TIMEOUT, at most 10 s).
   */
  stop(): Promise<void>;
}

/** One Kafka consumer of the service; a watchdog restart retires it and runs a fresh one. */
interface RunningConsumer {
  consumer: Consumer;
  assignment: AssignedPartition[];
  /**
   * Set when the watchdog gave up on it. Should it still be alive, it goes on journaling and committing what it is
   * given (correct by invariants 1 and 2) until the group drops it, but no longer speaks for the service: its
   * assignment, pause and crash are not the service's.
   */
  retired: boolean;
  start(): Promise<void>;
}

/** The pause before a fresh consumer replaces one kafkajs crashed for good, doubled per crash in a streak. */
const CRASH_RESTART_MIN_MS = 1000;
const CRASH_RESTART_MAX_MS = 30_000;
/** A crash this long after the previous one starts a new streak. */
const CRASH_STREAK_RESET_MS = 60_000;

/**
 * The longest a fetch waits for records on idle partitions (kafkajs's maxWaitTimeInMs). A stop's disconnect waits for
 * the fetch in flight, and its share of SHUTDOWN_TIMEOUT is 1.7 s at 5 s: with kafkajs's 5 s the member was abandoned
 * rather than left, and its partitions waited a session. 500 ms is the Java client's default (fetch.max.wait.ms).
 */
const FETCH_MAX_WAIT_MS = 500;

/** What the consumers of one service share. */
interface IngestState {
  paused: boolean;
  stopping: boolean;
  /** Aborted by stop(), or by deps.stopRequested: ends a consumer's wait to commit where the group starts. */
  halt: AbortController;
  /** Aborted startGraceMs after halt: ends the start's waits on Postgres, Kafka and the first join. */
  giveUp: AbortController;
  /** How long a start goes on after halt (startGraceAfterStopMs). */
  startGraceMs: number;
  /** How long a stopping consumer's disconnect is waited for (stopDisconnectTimeoutMs). */
  disconnectMs: number;
}

/**
 * The Kafka → journal consumer. Offsets are committed only after Postgres has committed the batch, and the journal
 * sets aside proven redeliveries (same coordinates, same content), so a crash at any point neither loses nor doubles
 * a record (docs/integrity.md). The same holds across a watchdog restart (ingest/watchdog.ts): the fresh consumer
 * resumes at the committed offsets, and the journal sets aside what it had journaled already.
 */
export async function startIngest(deps: IngestDeps): Promise<IngestService> {
  const { kafka, config, log } = deps;
  const state: IngestState = {
    paused: false,
    stopping: false,
    halt: new AbortController(),
    giveUp: new AbortController(),
    startGraceMs: startGraceAfterStopMs(config.shutdownTimeoutMs),
    disconnectMs: stopDisconnectTimeoutMs(config.shutdownTimeoutMs),
  };
  const giveUpLater = () => setTimeout(() => state.giveUp.abort(), state.startGraceMs).unref();
  state.halt.signal.addEventListener('abort', giveUpLater, { once: true });
  if (deps.stopRequested?.aborted) state.halt.abort();
  deps.stopRequested?.addEventListener('abort', () => state.halt.abort(), { once: true });
  // Both wait out an outage (Postgres up to 2 minutes, Kafka for the client's retries): a stop ends the wait.
  const unlessStopped = <T>(waiting: Promise<T>, on: string) =>
    untilAborted(
      waiting,
      state.giveUp.signal,
      () => new IngestStartInterrupted(`ingest stopped while waiting for ${on}`),
    );
  const lineageKey = await unlessStopped(
    loadLineageKey(deps.pool, config.lineageKey, undefined, state.giveUp.signal),
    'Postgres (the lineage key)',
  );
  await unlessStopped(refuseMissingTopics(kafka, config.kafka.topics), 'Kafka (the topics)');
  const restarter = createConsumerRestarter({
    consumer: {
      disconnect: async () => {
        current.retired = true;
        await current.consumer.disconnect();
      },
      startFresh: async () => {
        if (state.stopping) throw new Error('ingest is stopping');
        state.paused = false; // the retired consumer's pause ended with it; a fresh one pauses again if need be
        current = createConsumer(deps, lineageKey, state, onGivenUp);
        await current.start();
      },
    },
    metrics: deps.metrics,
    log: log.child({ module: 'consumer-restart' }),
    // A fresh consumer may first wait out a dead member to commit where the group starts.
    startTimeoutMs: Math.max(
      RESTART_START_TIMEOUT_MS,
      groupStartDeadlineMs(config.kafka.sessionTimeoutMs, config.kafka.topics.length) + 20_000,
    ),
  });
  // kafkajs disconnects a consumer for good after an error it does not retry (UNKNOWN_MEMBER_ID on a commit after the
  // coordinator dropped the member, seen after a broker restart): a fresh one is started after a pause that doubles
  // while such crashes follow each other (1 s up to 30 s), instead of ingest waiting for the watchdog.
  const crashes = { streak: 0, lastAt: 0, timer: undefined as NodeJS.Timeout | undefined };
  function onGivenUp(): void {
    if (state.stopping || crashes.timer) return;
    const now = Date.now();
    crashes.streak = now - crashes.lastAt > CRASH_STREAK_RESET_MS ? 0 : crashes.streak + 1;
    crashes.lastAt = now;
    const delay = Math.min(CRASH_RESTART_MIN_MS * 2 ** crashes.streak, CRASH_RESTART_MAX_MS);
    log.warn({ delay_ms: delay, streak: crashes.streak }, `Restarting the crashed Kafka consumer in ${delay} ms`);
    crashes.timer = setTimeout(() => {
      crashes.timer = undefined;
      void restarter.restart('crashed');
    }, delay);
  }

  let current = createConsumer(deps, lineageKey, state, onGivenUp);
  await startOrGiveUp(current, state, log);
  log.info(
    { topics: config.kafka.topics },
    `CRM Events Sink started. Listening to topics: ${JSON.stringify(config.kafka.topics)}`,
  );

  const watchdog =
    deps.lagMonitor && config.ingest.watchdogSeconds > 0
      ? startWatchdog({
          consumer: { assignment: () => current.assignment, isPaused: () => state.paused },
          monitor: deps.lagMonitor,
          restarter,
          log: log.child({ module: 'ingest-watchdog' }),
          afterMs: config.ingest.watchdogSeconds * 1000,
        })
      : undefined;

  return {
    consumer: () => current.consumer,
    assignment: () => [...current.assignment],
    isPaused: () => state.paused,
    stop: async () => {
      state.stopping = true;
      state.halt.abort();
      watchdog?.stop();
      restarter.stop();
      clearTimeout(crashes.timer);
      // Bounded on its own: a rebalance waiting on a frozen member holds the disconnect until that member's session
      // expires. A consumer that completes its join after this leaves at once (the GROUP_JOIN listener).
      const left = await disconnectWithin(current.consumer.disconnect(), state.disconnectMs, log, 'The Kafka consumer');
      if (left) log.info('Kafka consumer stopped');
    },
  };
}

/**
 * How long ingest's start may go on once a stop was asked for: a healthy start finishes (then stops in order), while
 * one waiting out an outage (Postgres, Kafka) or a first group join is given up. A join waits for every member, one
 * that died in the group for its whole session (KAFKA_SESSION_TIMEOUT_MS, up to 300 s), which SHUTDOWN_TIMEOUT would
 * not allow.
 */
const START_GRACE_AFTER_STOP_MS = 5000;

/** START_GRACE_AFTER_STOP_MS, or a quarter of SHUTDOWN_TIMEOUT if that is less: the disconnect and the rest follow. */
export function startGraceAfterStopMs(shutdownTimeoutMs?: number): number {
  return shareOf(shutdownTimeoutMs, 4, START_GRACE_AFTER_STOP_MS);
}

/**
 * Runs the service's first consumer. A stop asked for meanwhile (deps.stopRequested) ends a wait to commit where the
 * group starts at once, and a join still going on state.startGraceMs after it: the consumer is disconnected
 * (bounded) and IngestStartInterrupted thrown; nothing was consumed, since nothing is fetched before the join.
 */
async function startOrGiveUp(running: RunningConsumer, state: IngestState, log: Logger): Promise<void> {
  const gaveUp = new IngestStartInterrupted('ingest stopped while joining its consumer group');
  try {
    await untilAborted(running.start(), state.giveUp.signal, () => gaveUp);
    return;
  } catch (err) {
    if (err !== gaveUp) throw err;
  }
  state.stopping = true; // a join that completes after this leaves at once (the GROUP_JOIN listener)
  await disconnectWithin(running.consumer.disconnect(), state.disconnectMs, log, 'The joining Kafka consumer');
  log.warn(
    { grace_ms: state.startGraceMs },
    'Gave up joining the consumer group after the stop signal (it waits on a member that died in the group)',
  );
  throw gaveUp;
}

/** A consumer with the service's listeners, not yet connected; start() connects, subscribes and runs it. */
function createConsumer(
  deps: IngestDeps,
  lineageKey: LineageKey,
  state: IngestState,
  onGivenUp: () => void,
): RunningConsumer {
  const { kafka, config, log } = deps;
  const consumer = kafka.consumer({
    groupId: config.kafka.groupId,
    sessionTimeout: config.kafka.sessionTimeoutMs,
    heartbeatInterval: 3000,
    maxWaitTimeInMs: FETCH_MAX_WAIT_MS,
    maxBytesPerPartition: config.ingest.fetchBytesPerPartition,
    retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 300, maxRetryTime: 10_000 },
  });
  const running: RunningConsumer = { consumer, assignment: [], retired: false, start };
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    log.error({ err: payload.error, restart: payload.restart }, 'Kafka consumer crashed');
    if (!payload.restart && !running.retired) onGivenUp();
  });
  // A fetch holding only aborted transactional records or transaction markers never reaches eachBatch: kafkajs
  // resolves it and reports it as a batch of 0 messages. With autoCommit off nothing would commit past it, and the
  // partition would look lagging (and stalled) forever although everything readable is journaled. Batches of one
  // partition are handled one after another and each is committed before the next is fetched, so committing past an
  // empty one never skips a record.
  consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
    if (payload.batchSize !== 0 || state.stopping) return;
    const offset = (BigInt(payload.lastOffset) + 1n).toString();
    consumer
      .commitOffsets([{ topic: payload.topic, partition: payload.partition, offset }])
      .catch((err: Error) =>
        log.warn(
          { err: err.message, topic: payload.topic, partition: payload.partition },
          'Could not commit past aborted records',
        ),
      );
  });
  consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
    if (running.retired || state.stopping) {
      // Disconnected by the service (retired by a restart, or ingest stopping) while it was joining: kafkajs's
      // disconnect does not stop a runner still joining, which then joins on, or crashes on the closed connections
      // and restarts itself after the disconnect. Disconnected again once the join is done and its runner can stop.
      setImmediate(() => void consumer.disconnect().catch(() => undefined));
      return;
    }
    log.info({ member_id: payload.memberId, assignment: payload.memberAssignment }, 'Joined consumer group');
    running.assignment = Object.entries(payload.memberAssignment).flatMap(([topic, partitions]) =>
      partitions.map((partition) => ({ topic, partition })),
    );
    for (const { topic, partition } of running.assignment) initPartitionSeries(deps.metrics, topic, partition);
  });

  async function start(): Promise<void> {
    // A start at the end must be committed before the first fetch, or it lives only in this consumer's memory.
    if (!config.kafka.fromBeginning) {
      const pinned = await pinGroupStart(kafka, config.kafka.groupId, config.kafka.topics, log, {
        deadlineMs: groupStartDeadlineMs(config.kafka.sessionTimeoutMs, config.kafka.topics.length),
        signal: state.halt.signal,
      });
      if (pinned.length > 0) {
        log.info({ pinned }, `Consumer group start committed at the end of ${pinned.length} partition(s)`);
      }
    }
    await consumer.connect();
    // A shutdown (or a watchdog that gave up on this consumer) while connecting: do not join the group after it.
    if (state.stopping || running.retired) {
      await consumer.disconnect().catch(() => undefined);
      throw new IngestStartInterrupted('ingest stopped while the Kafka consumer was connecting');
    }
    await consumer.subscribe({ topics: config.kafka.topics, fromBeginning: config.kafka.fromBeginning });
    await consumer.run({
      autoCommit: false,
      partitionsConsumedConcurrently: config.ingest.concurrency,
      eachBatchAutoResolve: true,
      eachBatch: (payload) =>
        handleBatch(payload, consumer, deps, lineageKey, (value) => {
          if (running.retired) return;
          if (value !== state.paused) log[value ? 'warn' : 'info'](value ? 'Ingestion paused' : 'Ingestion resumed');
          state.paused = value;
        }),
    });
  }
  return running;
}

/** Subscribing to a topic the broker does not have fails deep inside kafkajs ("does not host this topic-partition"). */
async function refuseMissingTopics(kafka: Kafka, topics: string[]): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const missing = await missingTopics(admin, topics);
    if (missing.length > 0) {
      throw new ConfigError(
        'KAFKA_TOPICS',
        `names topics the broker does not have (${missing.join(', ')}): create them with \`npm run cli -- migrate\``,
      );
    }
  } finally {
    await disconnectAdmin(admin);
  }
}

async function handleBatch(
  { batch, heartbeat, isRunning, isStale }: EachBatchPayload,
  consumer: Consumer,
  deps: IngestDeps,
  lineageKey: LineageKey,
  setPaused: (paused: boolean) => void,
): Promise<void> {
  const { pool, metrics, log, config } = deps;
  if (batch.messages.length === 0) return;
  const { topic, partition } = batch;
  const parsed = batch.messages.map(({ offset, key, value, headers, timestamp }) =>
    parseRecord(
      { topic, partition, offset, key, value, headers, timestamp },
      { maxBytes: config.ingest.maxEventBytes, lineageKey },
    ),
  );
  const byTenant = countBy(parsed, (record) => ({
    tenant_id: metrics.tenantLabel(record.ok ? record.entry.tenantId : (record.dlq.tenantId ?? 'unknown')),
    topic,
  }));
  for (const [labels, count] of byTenant) metrics.ingested.inc(labels, count);

  let outcome: AppendOutcome | undefined;
  for (let attempt = 0; outcome === undefined; attempt++) {
    if (!isRunning() || isStale()) return; // shutting down or rebalanced: leave the batch uncommitted
    const timer = metrics.batchPersistSeconds.startTimer();
    try {
      outcome = await appendBatch(pool, parsed);
      timer();
    } catch (err) {
      if ((err as Error).name !== 'JournalUnavailableError') throw err;
      setPaused(true);
      const delay = Math.min(config.ingest.retryMaxDelayMs, 250 * 2 ** Math.min(attempt, 10));
      log.warn(
        { err: (err as Error).message, attempt: attempt + 1, retry_in_ms: delay, topic: batch.topic },
        'Postgres unavailable: ingestion paused, nothing committed; retrying',
      );
      await sleepWithHeartbeat(delay, heartbeat, isRunning);
    }
  }
  setPaused(false);

  const next = (BigInt(batch.lastOffset()) + 1n).toString();
  // Counted once Postgres has committed, before the Kafka commit: should that fail, the batch comes again and its
  // records count as redelivered (consumed = sum of outcomes either way, and journaled stays the journal's count).
  accountBatch(outcome, topic, partition, metrics, log);
  await consumer.commitOffsets([{ topic, partition, offset: next }]);
  reportBatch(outcome, metrics, log, config.ingest.perEventLogLimit);
  deps.onJournaled?.(outcome);
}

/** Waits in short steps, heartbeating so the group keeps this member while Postgres is away. */
async function sleepWithHeartbeat(ms: number, heartbeat: () => Promise<void>, isRunning: () => boolean) {
  const until = Date.now() + ms;
  while (Date.now() < until && isRunning()) {
    await new Promise((resolve) => setTimeout(resolve, Math.min(1000, until - Date.now())));
    await heartbeat().catch(() => undefined);
  }
}

import type { Consumer, EachBatchPayload, Kafka } from 'kafkajs';
import type { Config } from '../shared/config';
import type { Pool } from '../shared/db';
import type { Logger } from '../shared/logger';
import type { Metrics } from '../shared/metrics';
import { countBy } from '../shared/count-by';
import { ConfigError } from '../shared/errors';
import { missingTopics } from '../shared/kafka';
import { initPartitionSeries } from '../shared/metrics';
import { appendBatch, type AppendOutcome } from '../journal/append';
import { loadLineageKey, type LineageKey } from '../journal/lineage';
import { parseRecord } from '../journal/record';
import { accountBatch, reportBatch } from './report-batch';

export interface IngestDeps {
  kafka: Kafka;
  pool: Pool;
  metrics: Metrics;
  log: Logger;
  config: Pick<Config, 'kafka' | 'ingest' | 'lineageKey'>;
  /** Called after each batch is committed in Postgres (the live stream hooks in here). */
  onJournaled?: (outcome: AppendOutcome) => void;
}

export interface IngestService {
  consumer: Consumer;
  /** True while Postgres refuses writes and ingestion is paused, retrying. */
  isPaused(): boolean;
  /** Finishes the batch in flight, commits it, and leaves the group. */
  stop(): Promise<void>;
}

/**
 * The Kafka → journal consumer. Offsets are committed only after Postgres has committed the batch, and the journal
 * sets aside proven redeliveries (same coordinates, same content), so a crash at any point neither loses nor doubles
 * a record (docs/integrity.md).
 */
export async function startIngest(deps: IngestDeps): Promise<IngestService> {
  const { kafka, config, log } = deps;
  const consumer = kafka.consumer({
    groupId: config.kafka.groupId,
    sessionTimeout: config.kafka.sessionTimeoutMs,
    heartbeatInterval: 3000,
    maxBytesPerPartition: config.ingest.fetchBytesPerPartition,
    retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 300, maxRetryTime: 10_000 },
  });
  const lineageKey = await loadLineageKey(deps.pool, config.lineageKey);
  let paused = false;
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    log.error({ err: payload.error, restart: payload.restart }, 'Kafka consumer crashed');
    if (!payload.restart) process.exitCode = 1;
  });
  let stopping = false;
  // A fetch holding only aborted transactional records or transaction markers never reaches eachBatch: kafkajs
  // resolves it and reports it as a batch of 0 messages. With autoCommit off nothing would commit past it, and the
  // partition would look lagging (and stalled) forever although everything readable is journaled. Batches of one
  // partition are handled one after another and each is committed before the next is fetched, so committing past an
  // empty one never skips a record.
  consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
    if (payload.batchSize !== 0 || stopping) return;
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
    log.info({ member_id: payload.memberId, assignment: payload.memberAssignment }, 'Joined consumer group');
    for (const [topic, partitions] of Object.entries(payload.memberAssignment)) {
      for (const partition of partitions) initPartitionSeries(deps.metrics, topic, partition);
    }
  });

  await refuseMissingTopics(kafka, config.kafka.topics);
  await consumer.connect();
  await consumer.subscribe({ topics: config.kafka.topics, fromBeginning: config.kafka.fromBeginning });
  await consumer.run({
    autoCommit: false,
    partitionsConsumedConcurrently: config.ingest.concurrency,
    eachBatchAutoResolve: true,
    eachBatch: (payload) =>
      handleBatch(payload, consumer, deps, lineageKey, (value) => {
        if (value !== paused) log[value ? 'warn' : 'info'](value ? 'Ingestion paused' : 'Ingestion resumed');
        paused = value;
      }),
  });
  log.info(
    { topics: config.kafka.topics },
    `CRM Events Sink started. Listening to topics: ${JSON.stringify(config.kafka.topics)}`,
  );

  return {
    consumer,
    isPaused: () => paused,
    stop: async () => {
      stopping = true;
      await consumer.disconnect();
      log.info('Kafka consumer stopped');
    },
  };
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
    await admin.disconnect();
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

import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Consumer, Kafka, Producer } from 'kafkajs';
import { createArchiveStore, type ArchiveStore } from '../../archive';
import { startIngest, type IngestDeps, type IngestService } from '../../ingest/consumer';
import { startLagMonitor, type LagMonitor } from '../../ingest/lag-monitor';
import type { Config } from '../../shared/config';
import { createPool, type Pool } from '../../shared/db';
import { createKafka, createProducer, ensureTopics } from '../../shared/kafka';
import { createLogger, type Logger } from '../../shared/logger';
import { createMetrics, type Metrics } from '../../shared/metrics';
import { loadLineageKey, type LineageKey } from '../../journal/lineage';
import { createTestDatabase } from './database';
import { baseConfig, uniqueSuffix } from './env';

export interface SinkHarness {
  config: Config;
  databaseUrl: string;
  pool: Pool;
  kafka: Kafka;
  /** The replay producer (createProducer: each send a Kafka transaction), what the activities publish on. */
  producer: Producer;
  /**
   * What ApexFlow publishes with: a plain idempotent producer (send() uses it). Its records take consecutive offsets;
   * the replay producer's commit markers take offsets too.
   */
  upstream: Producer;
  metrics: Metrics;
  log: Logger;
  /** The lineage key of this database (what ingest verifies and the activities sign with). */
  lineageKey: LineageKey;
  topics: { leads: string; jobs: string };
  /** The archive store of config.archive: by default a private temporary directory, removed by close(). */
  archive: ArchiveStore;
  ingest?: IngestService;
  /** Starts the real consumer; given a lag monitor, with its watchdog (INGEST_WATCHDOG_SECONDS). */
  startIngest(extra?: Pick<IngestDeps, 'lagMonitor'>): Promise<IngestService>;
  stopIngest(): Promise<void>;
  /** Sends JSON (or raw string/Buffer/null) values to a topic and partition. */
  send(
    topic: string,
    values: (unknown | string | Buffer | null)[],
    opts?: { partition?: number; key?: string; headers?: Record<string, string> },
  ): Promise<void>;
  journalCount(): Promise<number>;
  dlqCount(): Promise<number>;
  close(): Promise<void>;
}

/**
 * A private world for one test file on the real stack: its own database (migrated), its own topics and consumer
 * group, a producer, and the real ingest consumer on demand.
 */
export async function createSinkHarness(label: string, env: Record<string, string> = {}): Promise<SinkHarness> {
  const base = baseConfig();
  const db = await createTestDatabase(base.databaseUrl, label);
  const suffix = uniqueSuffix();
  const topics = { leads: `test.${suffix}.leads.created`, jobs: `test.${suffix}.jobs.created` };
  const config = baseConfig({
    DATABASE_URL: db.databaseUrl,
    KAFKA_TOPICS: `${topics.leads},${topics.jobs}`,
    KAFKA_GROUP_ID: `test-${label}-${suffix}`,
    INGEST_RETRY_MAX_DELAY_MS: '1000',
    ARCHIVE_DIR: path.join(os.tmpdir(), `crm-archive-${label}-${suffix}`),
    ...env,
  });
  const log = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
  // Named apart from the service's own pools, which tests tell apart in pg_stat_activity.
  const pool = createPool(config.databaseUrl, 5, log, undefined, 'crm-events-sink-test');
  const kafka = createKafka(config.kafka.brokers, `${config.kafka.clientId}-test`, log);
  await ensureTopics(kafka, Object.values(topics), 3);
  const producer = createProducer(kafka);
  await producer.connect();
  const upstream = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await upstream.connect();
  const metrics = createMetrics(config.metrics.tenantLabelLimit);
  const lineageKey = await loadLineageKey(pool, config.lineageKey);
  const archive = createArchiveStore(config.archive);

  const harness: SinkHarness = {
    config,
    databaseUrl: db.databaseUrl,
    pool,
    kafka,
    producer,
    upstream,
    metrics,
    log,
    lineageKey,
    topics,
    archive,
    async startIngest(extra = {}) {
      harness.ingest = await startIngest({ kafka, pool, metrics, log, config, ...extra });
      return harness.ingest;
    },
    async stopIngest() {
      await harness.ingest?.stop();
      harness.ingest = undefined;
    },
    async send(topic, values, opts = {}) {
      await upstream.send({
        topic,
        acks: -1,
        messages: values.map((v) => ({
          partition: opts.partition,
          key: opts.key ?? null,
          headers: opts.headers,
          value:
            v === null || typeof v === 'string' || Buffer.isBuffer(v)
              ? (v as string | Buffer | null)
              : JSON.stringify(v),
        })),
      });
    },
    journalCount: async () =>
      (await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM event_journal')).rows[0].n,
    dlqCount: async () => (await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM event_dlq')).rows[0].n,
    async close() {
      await harness.stopIngest();
      await producer.disconnect();
      await upstream.disconnect();
      const admin = kafka.admin();
      await admin.connect();
      await admin.deleteTopics({ topics: Object.values(topics) }).catch(() => undefined);
      await admin.disconnect();
      await pool.end();
      await db.drop();
      await archive.close();
      if (config.archive.store === 'local') await rm(config.archive.dir, { recursive: true, force: true });
    },
  };
  return harness;
}

/** The env that points a spawned api or worker at the harness's local archive directory. */
export function localArchiveEnv(h: SinkHarness): Record<string, string> {
  return { ARCHIVE_STORE: 'local', ARCHIVE_DIR: h.config.archive.dir };
}

/** The process's lag monitor as serve starts it, on the harness's group, topics and INGEST_* settings. */
export function startHarnessLagMonitor(h: SinkHarness): LagMonitor {
  return startLagMonitor({
    kafka: h.kafka,
    groupId: h.config.kafka.groupId,
    topics: h.config.kafka.topics,
    fromBeginning: h.config.kafka.fromBeginning,
    metrics: h.metrics,
    log: h.log,
    intervalMs: h.config.ingest.lagIntervalMs,
    stallSeconds: h.config.ingest.stallSeconds,
  });
}

/**
 * Test-only seam: pauses the running kafkajs consumer on every partition it was given, directly, so that it stops
 * fetching while the service's own bookkeeping (isPaused, the assignment) says it is consuming — what a silent kafkajs
 * hang does. Returns the consumer it hung.
 */
export function hangConsumer(ingest: IngestService): Consumer {
  const byTopic = new Map<string, number[]>();
  for (const { topic, partition } of ingest.assignment())
    byTopic.set(topic, [...(byTopic.get(topic) ?? []), partition]);
  const consumer = ingest.consumer();
  consumer.pause([...byTopic].map(([topic, partitions]) => ({ topic, partitions })));
  return consumer;
}

/**
 * Polls until check() returns a truthy value or the deadline passes (then throws with the last value or error seen).
 * A check that throws counts as "not yet".
 */
export async function eventually<T>(
  check: () => Promise<T>,
  what: string,
  timeoutMs = 30_000,
  everyMs = 200,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value) return value as NonNullable<T>;
      last = value;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
}

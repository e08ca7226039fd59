import type { FastifyInstance } from 'fastify';
import type { Admin } from 'kafkajs';
import { buildApp } from '../../api/app';
import { startLagMonitor, type LagMonitor } from '../../ingest/lag-monitor';
import { exited, spawnCli } from '../support/ingest-process';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';

/**
 * Invariant 4 on the real broker: with no consumer running at all, the monitor reads the group's committed offsets
 * and the high watermarks from Kafka, reports lag for every partition, and after INGEST_STALL_SECONDS names the
 * partitions that do not move in /health, until their offsets are committed forward.
 */

const STALL_SECONDS = 8;

let h: SinkHarness;
let admin: Admin;
let monitor: LagMonitor;
let app: FastifyInstance;
let started: number;

beforeAll(async () => {
  h = await createSinkHarness('lag');
  admin = h.kafka.admin();
  await admin.connect();
  for (const partition of [0, 1, 2]) {
    await h.send(
      h.topics.leads,
      [1, 2, 3, 4, 5].map((n) => ({ tenant_id: 'acme', n })),
      { partition },
    );
  }
  // The group is behind on partitions 0 (by 3) and 1 (by 5), at the end of 2; it committed nothing on the jobs topic.
  await setOffsets({ 0: '2', 1: '0', 2: '5' });
  started = Date.now();
  monitor = startLagMonitor({
    kafka: h.kafka,
    groupId: h.config.kafka.groupId,
    topics: h.config.kafka.topics,
    metrics: h.metrics,
    log: h.log,
    intervalMs: 200,
    stallSeconds: STALL_SECONDS,
  });
  app = await buildApp({
    config: h.config,
    pool: h.pool,
    metrics: h.metrics,
    log: h.log,
    healthChecks: { postgres: () => h.pool.query('SELECT 1'), ingest: () => monitor.check() },
  });
});

afterAll(async () => {
  await monitor?.stop();
  await app?.close();
  await admin?.disconnect();
  await h?.close();
});

const setOffsets = (offsets: Record<number, string>) =>
  admin.setOffsets({
    groupId: h.config.kafka.groupId,
    topic: h.topics.leads,
    partitions: Object.entries(offsets).map(([partition, offset]) => ({ partition: Number(partition), offset })),
  });

/** One gauge's values by "topic/partition". */
const gauge = async (name: 'consumerLag' | 'committedOffset' | 'partitionStalled') =>
  Object.fromEntries(
    (await h.metrics[name].get()).values.map((v) => [`${v.labels.topic}/${v.labels.partition}`, v.value]),
  );

interface HealthBody {
  status: string;
  service: string;
  checks: Record<string, { status: string; error?: string }>;
}

const health = async () => {
  const res = await app.inject({ method: 'GET', url: '/health' });
  return { statusCode: res.statusCode, body: JSON.parse(res.payload) as HealthBody };
};

describe('lag monitor on the real broker, with no consumer running', () => {
  it('reports lag and the committed offset for every partition of every subscribed topic', async () => {
    const lag = await eventually(async () => {
      const values = await gauge('consumerLag');
      return Object.keys(values).length === 6 ? values : undefined;
    }, 'lag for all six partitions');
    const { leads, jobs } = h.topics;
    expect(lag).toEqual({
      [`${leads}/0`]: 3,
      [`${leads}/1`]: 5,
      [`${leads}/2`]: 0,
      [`${jobs}/0`]: 0,
      [`${jobs}/1`]: 0,
      [`${jobs}/2`]: 0,
    });
    expect(await gauge('committedOffset')).toMatchObject({ [`${leads}/0`]: 2, [`${leads}/1`]: 0, [`${leads}/2`]: 5 });
    // Lag alone is not a stall: the clock has not run out yet.
    const early = await health();
    expect(Date.now() - started).toBeLessThan(STALL_SECONDS * 1000);
    expect(early).toMatchObject({ statusCode: 200, body: { status: 'healthy', checks: { ingest: { status: 'up' } } } });
  });

  it('after stallSeconds, /health answers 503 degraded naming each stalled partition with its lag', async () => {
    const { leads } = h.topics;
    const res = await eventually(async () => {
      const r = await health();
      return r.statusCode === 503 ? r : undefined;
    }, '/health to report the stall');
    expect(res.body).toMatchObject({
      status: 'degraded',
      service: 'crm-events-sink',
      checks: { postgres: { status: 'up' }, ingest: { status: 'down' } },
    });
    const error = res.body.checks.ingest.error!;
    expect(error).toMatch(new RegExp(`^partition ${leads}/0 stalled for \\d+ s with lag 3; `));
    expect(error).toMatch(new RegExp(`partition ${leads}/1 stalled for \\d+ s with lag 5$`));
    expect(monitor.stalled().map((s) => [s.topic, s.partition, s.lag])).toEqual([
      [leads, 0, 3],
      [leads, 1, 5],
    ]);
    expect(await gauge('partitionStalled')).toMatchObject({ [`${leads}/0`]: 1, [`${leads}/1`]: 1, [`${leads}/2`]: 0 });
    const text = await h.metrics.registry.metrics();
    expect(text).toContain(`crm_events_partition_stalled{topic="${leads}",partition="1"} 1`);
  });

  it('is no longer stalled once the offsets are committed forward to the end, and stays so', async () => {
    const { leads } = h.topics;
    await setOffsets({ 0: '5', 1: '5' });
    const res = await eventually(async () => {
      const r = await health();
      return r.statusCode === 200 ? r : undefined;
    }, '/health to recover');
    expect(res.body).toMatchObject({ status: 'healthy', checks: { ingest: { status: 'up' } } });
    expect(monitor.stalled()).toEqual([]);
    expect(await gauge('consumerLag')).toMatchObject({ [`${leads}/0`]: 0, [`${leads}/1`]: 0 });
    expect(await gauge('partitionStalled')).toMatchObject({ [`${leads}/0`]: 0, [`${leads}/1`]: 0 });
    await new Promise((r) => setTimeout(r, (STALL_SECONDS + 1) * 1000));
    expect((await health()).statusCode).toBe(200);
  });

  it('runs in an API-only process too: `crm-events-sink api` names the stall in /health, from Kafka alone', async () => {
    const { leads } = h.topics;
    await setOffsets({ 0: '1' });
    const port = 20_000 + Math.floor(Math.random() * 10_000);
    const api = spawnCli('api', {
      DATABASE_URL: h.databaseUrl,
      KAFKA_TOPICS: h.config.kafka.topics.join(','),
      KAFKA_GROUP_ID: h.config.kafka.groupId,
      API_HOST: '127.0.0.1',
      API_PORT: String(port),
      INGEST_LAG_INTERVAL_MS: '200',
      INGEST_STALL_SECONDS: String(STALL_SECONDS),
    });
    try {
      const body = await eventually(async () => {
        const res = await fetch(`http://127.0.0.1:${port}/health`);
        return res.status === 503 ? ((await res.json()) as HealthBody) : undefined;
      }, 'the API process to report the stall');
      expect(body).toMatchObject({
        status: 'degraded',
        checks: { postgres: { status: 'up' }, kafka: { status: 'up' }, ingest: { status: 'down' } },
      });
      expect(body.checks.ingest.error).toMatch(new RegExp(`^partition ${leads}/0 stalled for \\d+ s with lag 4$`));
    } finally {
      api.kill('SIGTERM');
      expect(await exited(api)).toBe(0);
    }
  });
});

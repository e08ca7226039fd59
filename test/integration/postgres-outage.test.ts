import type { FastifyInstance } from 'fastify';
import type { Admin } from 'kafkajs';
import { buildApp } from '../../api/app';
import { makeEvent } from '../../cli/traffic';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';
import { stack } from '../support/stack';

let h: SinkHarness;
let app: FastifyInstance;
let admin: Admin;

beforeAll(async () => {
  h = await createSinkHarness('pgoutage');
  admin = h.kafka.admin();
  await admin.connect();
  app = await buildApp({
    config: h.config,
    pool: h.pool,
    metrics: h.metrics,
    log: h.log,
    healthChecks: { postgres: () => h.pool.query('SELECT 1'), kafka: () => admin.describeCluster() },
  });
});
afterAll(async () => {
  stack('up', 'postgres'); // whatever happened, leave Postgres running for the next suite
  await app?.close();
  await admin?.disconnect();
  await h?.close();
});

const health = async () => {
  const res = await app.inject({ method: 'GET', url: '/health' });
  return { status: res.statusCode, body: res.json() };
};

it('pauses while Postgres is down for 20 s, answers 503 on /health, then journals every event once and DLQs none', async () => {
  await h.startIngest();
  expect(await health()).toMatchObject({ status: 200, body: { status: 'healthy', service: 'crm-events-sink' } });

  const total = 1500;
  let produced = 0;
  const producing = (async () => {
    while (produced < total) {
      const events = Array.from({ length: 50 }, (_, i) => makeEvent(produced + i, 10));
      await h.upstream.send({
        topic: h.topics.leads,
        acks: -1,
        messages: events.map(({ key, value }) => ({ key, value })),
      });
      produced += events.length;
      await new Promise((r) => setTimeout(r, 800)); // ~24 s of steady traffic, spanning the outage
    }
  })();

  await eventually(async () => (await h.journalCount()) > 100, 'ingestion to be under way');
  stack('down', 'postgres');
  const outageStarted = Date.now();
  const degraded = await eventually(async () => {
    const r = await health();
    return r.status === 503 ? r : undefined;
  }, '/health to report the outage');
  expect(degraded.body).toMatchObject({
    status: 'degraded',
    service: 'crm-events-sink',
    checks: { postgres: { status: 'down' } },
  });
  expect(degraded.body.checks.postgres.error).toEqual(expect.any(String));
  expect(degraded.body.checks).toHaveProperty('kafka');
  await eventually(async () => h.ingest?.isPaused(), 'ingestion to pause');

  await new Promise((r) => setTimeout(r, Math.max(0, 20_000 - (Date.now() - outageStarted))));
  expect(h.ingest?.isPaused()).toBe(true);
  stack('up', 'postgres');

  await producing;
  await eventually(async () => (await h.journalCount()) === total, `all ${total} events journaled`, 90_000);
  await eventually(async () => h.ingest?.isPaused() === false, 'ingestion to resume');
  const { rows } = await h.pool.query(
    `SELECT count(*)::int AS total, count(DISTINCT payload->>'seq')::int AS seqs,
            count(DISTINCT (kafka_partition, kafka_offset))::int AS coords FROM event_journal`,
  );
  expect(rows[0]).toEqual({ total, seqs: total, coords: total });
  expect(await h.dlqCount()).toBe(0);
  expect((await health()).status).toBe(200);
});

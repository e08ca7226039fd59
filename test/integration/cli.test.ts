import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { createLogger } from '../../shared/logger';
import { countDlqEntries } from '../../repository/event-dlq';
import { createMetrics } from '../../shared/metrics';
import { startMetricsServer } from '../../shared/metrics-server';
import { prepareDatabase } from '../../lifecycle/prepare';
import { SQL_DIR } from '../../shared/migrate';
import { createTestDatabase } from '../support/database';
import { baseConfig } from '../support/env';
import { topicSize } from '../support/journal';
import { createSinkHarness, type SinkHarness } from '../support/sink';

const run = promisify(execFile);
const CLI = path.resolve(__dirname, '../../dist/cli/main.js');
const cli = (args: string[], env: Record<string, string> = {}) =>
  run(process.execPath, [CLI, ...args], { env: { ...process.env, LOG_LEVEL: 'warn', ...env }, timeout: 60_000 });

let h: SinkHarness;
beforeAll(async () => {
  h = await createSinkHarness('cli');
});
afterAll(() => h.close());

it('fails fast at start, naming the bad variable', async () => {
  const err = await cli(['api'], { API_PORT: 'abc' }).catch((e: { code: number; stderr: string }) => e);
  expect(err).toMatchObject({ code: 2 });
  expect((err as { stderr: string }).stderr).toContain(
    'Invalid configuration: API_PORT must be a whole number, got "abc"',
  );
});

it('without auth, the API refuses to listen beyond this host unless AUTH_MODE=none says so', async () => {
  const err = await cli(['api'], { API_HOST: '0.0.0.0', AUTH_JWT_SECRET: '' }).catch(
    (e: { code: number; stderr: string }) => e,
  );
  expect(err).toMatchObject({ code: 2 });
  expect((err as { stderr: string }).stderr).toContain(
    'API_HOST is "0.0.0.0", reachable from other hosts, and auth is off',
  );
});

it('the API refuses to start with a TLS certificate but no key, naming the variable', async () => {
  const err = await cli(['api'], { API_TLS_CERT: __filename, API_TLS_KEY: '' }).catch(
    (e: { code: number; stderr: string }) => e,
  );
  expect(err).toMatchObject({ code: 2 });
  expect((err as { stderr: string }).stderr).toContain(
    "Invalid configuration: API_TLS_KEY must be set with API_TLS_CERT (the certificate's key)",
  );
});

it('ingest refuses to start on topics the broker does not have, naming them and how to create them', async () => {
  const topic = `test.missing.${Date.now()}`;
  const err = await cli(['ingest'], { DATABASE_URL: h.databaseUrl, KAFKA_TOPICS: topic, METRICS_PORT: '0' }).catch(
    (e: { code: number; stderr: string }) => e,
  );
  expect(err).toMatchObject({ code: 2 });
  expect((err as { stderr: string }).stderr).toContain(
    `Invalid configuration: KAFKA_TOPICS names topics the broker does not have (${topic}): create them with \`npm run cli -- migrate\``,
  );
});

it('produce publishes the requested number of events with a progress bar', async () => {
  const { stdout, stderr } = await cli(['produce', '--count', '120', '--tenants', '4', '--topic', h.topics.jobs]);
  expect(stdout).toMatch(/Produced 120 events for 4 tenant\(s\)/);
  expect(stderr).toMatch(/produce \[.*\] 120\/120 events/);
  expect(await topicSize(h.kafka, h.topics.jobs)).toBe(120);
});

it('stack status prints each component with its address and state', async () => {
  const { stdout } = await run('bash', [path.resolve(__dirname, '../../scripts/stack.sh'), 'status']);
  const lines = stdout.trim().split('\n');
  expect(lines.map((l) => l.split(/\s+/)[0])).toEqual(['postgres', 'kafka', 'temporal', 's3']);
  expect(lines[0]).toMatch(/^postgres\s+127\.0\.0\.1:5446\s+up\b/);
  expect(lines[1]).toMatch(/^kafka\s+127\.0\.0\.1:9092\s+up\b/);
  expect(lines[2]).toMatch(/^temporal\s+127\.0\.0\.1:7233\s+up\b/);
  expect(lines[3]).toMatch(/^s3\s+127\.0\.0\.1:9000\s+up\b/);
});

it('migrate applies the schema (and partitions the journal) once even when two processes start at once', async () => {
  const db = await createTestDatabase(baseConfig().databaseUrl, 'migrate_race');
  try {
    // createTestDatabase already migrated; race two more runs against an empty schema.
    const client = new pg.Client({ connectionString: db.databaseUrl });
    await client.connect();
    await client.query('DROP SCHEMA public CASCADE; CREATE SCHEMA public');
    await client.end();
    const log = createLogger('silent');
    const [a, b] = await Promise.all([prepareDatabase(db.databaseUrl, log), prepareDatabase(db.databaseUrl, log)]);
    // Every migration in sql/, applied once between the two.
    const migrations = readdirSync(SQL_DIR)
      .filter((f) => f.endsWith('.sql'))
      .map((f) => f.replace(/\.sql$/, ''))
      .sort();
    expect(migrations).toEqual(expect.arrayContaining(['001_event_journal', '011_removed_records']));
    expect([...a, ...b].sort()).toEqual(migrations);
    const check = new pg.Client({ connectionString: db.databaseUrl });
    await check.connect();
    const { rows } = await check.query('SELECT name FROM pgmigrations ORDER BY id');
    await check.end();
    expect(rows.map((r) => r.name)).toEqual(migrations);
    const partitioned = new pg.Client({ connectionString: db.databaseUrl });
    await partitioned.connect();
    const kind = await partitioned.query(
      "SELECT relkind::text AS kind FROM pg_class WHERE oid = 'event_journal'::regclass",
    );
    await partitioned.end();
    expect(kind.rows[0].kind).toBe('p');
  } finally {
    await db.drop();
  }
});

it('serves Prometheus metrics on their own port, the DLQ size read from Postgres at scrape time', async () => {
  await h.pool.query(
    "INSERT INTO event_dlq (topic, error, reason) VALUES ('t', 'e', 'invalid_json'), ('t', 'e2', 'invalid_json')",
  );
  const metrics = createMetrics(100, { dlqSize: () => countDlqEntries(h.pool) });
  metrics.ingested.inc({ tenant_id: 'acme', topic: 'apexflow.leads.created' }, 5);
  const server = await startMetricsServer(metrics.registry, '127.0.0.1', 0, createLogger('silent'));
  try {
    const port = (server.address() as { port: number }).port;
    const body = await new Promise<string>((resolve, reject) =>
      http
        .get(`http://127.0.0.1:${port}/metrics`, (res) => {
          let text = '';
          res.on('data', (c) => (text += c));
          res.on('end', () => resolve(text));
        })
        .on('error', reject),
    );
    expect(body).toContain('crm_events_ingested_total{tenant_id="acme",topic="apexflow.leads.created"} 5');
    expect(body).toContain('process_resident_memory_bytes');
    expect(body).toContain('crm_events_dlq_size 2');
  } finally {
    server.close();
  }
});

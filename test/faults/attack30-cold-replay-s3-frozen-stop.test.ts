import { Client, Connection } from '@temporalio/client';
import net from 'node:net';
import type { ChildProcess } from 'node:child_process';
import fc from 'fast-check';
import { createArchiveStore, type ArchiveStore } from '../../archive';
import { LINEAGE_HEADERS } from '../../journal/lineage';
import { ensureTopics } from '../../shared/kafka';
import { archiveWindow } from '../../bench/support/archive';
import { readReplayed, type RawMessage } from '../support/replayed';
import { createTestBucket } from '../support/s3';
import { kafkaBrokerPid } from '../support/stack';
import { deleteSchedule } from '../support/temporal';
import { exited, spawnCli, untilPrinted } from '../support/ingest-process';
import { createSinkHarness, type SinkHarness } from '../support/sink';
import { uniqueSuffix } from '../support/env';

/**
 * attack30 (area A, cold replay): a range replay whose window reaches archived S3 segments, run by a real `worker`
 * process; the stack's S3 server is frozen (SIGSTOP of its process; A30_PROXY_FREEZE=1: a TCP proxy in front of it
 * holds every byte instead) at a random moment of the replay; SIGTERM to the worker while it is frozen; the store answers again and a
 * new worker finishes the replay.
 *
 * Invariants (docs/lifecycle.md section 6, docs/integrity.md "Shutdown"): the worker exits 0 within SHUTDOWN_TIMEOUT;
 * the replay completes and publishes every event of the range exactly once, each message byte for byte (key, value,
 * headers but the replay id and proof) what a replay from Postgres sent for that row before it was archived.
 */
jest.setTimeout(170_000);

const SHUTDOWN_TIMEOUT_MS = 10_000;
const DAYS = 6;
const PER_DAY = 80;
const ROUNDS = Number(process.env.A30_ROUNDS ?? 3);
let h: SinkHarness;
let bucket: Awaited<ReturnType<typeof createTestBucket>>;
let store: ArchiveStore;
let connection: Connection;
let client: Client;
let proxy: Proxy;
let s3Pid: number | undefined;
/** A30_PROXY_FREEZE=1: the proxy holds the bytes instead of a SIGSTOP of the S3 server. */
const PROXY_FREEZE = process.env.A30_PROXY_FREEZE === '1';
const children = new Set<ChildProcess>();
const queue = `a30-cold-${uniqueSuffix()}`;
let worker: ChildProcess;
let hot: Map<number, RawMessage>;
let hotId: string;
let allIds: number[];

interface Proxy {
  port: number;
  requests: number;
  frozen: boolean;
  freeze(): void;
  thaw(): void;
  close(): Promise<void>;
}

/** A TCP proxy whose freeze() passes nothing more in either direction (new connections are accepted, then held). */
async function proxyTo(host: string, port: number): Promise<Proxy> {
  const sockets = new Set<net.Socket>();
  const state: Proxy = {
    port: 0,
    requests: 0,
    frozen: false,
    freeze() {
      state.frozen = true;
    },
    thaw() {
      state.frozen = false;
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    async close() {
      state.thaw();
      await new Promise((r) => server.close(r));
    },
  };
  const server = net.createServer((c) => {
    const u = net.connect({ host, port });
    sockets.add(c);
    sockets.add(u);
    c.on('error', () => u.destroy());
    u.on('error', () => c.destroy());
    c.on('close', () => u.destroy());
    u.on('close', () => c.destroy());
    u.on('data', (chunk: Buffer) => {
      if (!state.frozen) c.write(chunk);
    });
    c.on('data', (chunk: Buffer) => {
      if (state.frozen) return;
      if (/^(GET|PUT|POST|DELETE|HEAD) /.test(chunk.toString('latin1', 0, 8))) state.requests++;
      u.write(chunk);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.port = (server.address() as net.AddressInfo).port;
  return state;
}

function startWorker(): ChildProcess {
  const s3 = bucket.config;
  const child = spawnCli('worker', {
    DATABASE_URL: h.config.databaseUrl,
    KAFKA_TOPICS: h.config.kafka.topics.join(','),
    TEMPORAL_TASK_QUEUE: queue,
    DLQ_RETRY_SCHEDULE_ID: `${queue}-dlq`,
    MAINTENANCE_SCHEDULE_ID: `${queue}-mnt`,
    ARCHIVE_STORE: 's3',
    ARCHIVE_S3_ENDPOINT: `http://127.0.0.1:${proxy.port}`,
    ARCHIVE_S3_BUCKET: s3.bucket,
    ARCHIVE_S3_REGION: s3.region,
    ARCHIVE_S3_ACCESS_KEY_ID: s3.accessKeyId ?? '',
    ARCHIVE_S3_SECRET_ACCESS_KEY: s3.secretAccessKey ?? '',
    SHUTDOWN_TIMEOUT: `${SHUTDOWN_TIMEOUT_MS}ms`,
    LOG_LEVEL: 'info',
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

const comparable = (m: RawMessage, replayId: string) => ({
  key: m.key,
  value: m.value.replace(JSON.stringify(replayId), '"<replay>"'),
  headers: m.headers.filter(([name]) => name !== LINEAGE_HEADERS.id && name !== LINEAGE_HEADERS.proof),
});

const RANGE = { start: '2025-01-01T00:00:00Z', end: '2100-01-01T00:00:00Z', includeReplays: true };

async function startReplay(workflowId: string, extra: Record<string, unknown> = {}) {
  const targetTopic = `${h.topics.leads}.${workflowId}`;
  await ensureTopics(h.kafka, [targetTopic], 3);
  const handle = await client.workflow.start('rangeReplayWorkflow', {
    taskQueue: queue,
    workflowId,
    args: [{ source: 'range', targetTopic, ...RANGE, ...extra }],
    workflowExecutionTimeout: '10m',
  });
  return { handle, targetTopic };
}

beforeAll(async () => {
  h = await createSinkHarness('a30cold');
  bucket = await createTestBucket('a30cold');
  store = createArchiveStore({ ...h.config.archive, store: 's3', s3: bucket.config });
  const s3 = new URL(bucket.config.endpoint!);
  s3Pid = kafkaBrokerPid([s3.host]);
  proxy = await proxyTo(s3.hostname, Number(s3.port));
  connection = await Connection.connect({ address: h.config.temporal.address });
  client = new Client({ connection, namespace: h.config.temporal.namespace });
  const { rows } = await h.pool.query<{ id: string }>(
    `INSERT INTO event_journal (tenant_id, topic, payload, received_at, kafka_key, kafka_key_bytes, kafka_headers,
                                content_hash)
     SELECT 'acme', $1,
            jsonb_build_object('tenant_id', 'acme', 'n', g, 'big', 123456789012345678901234567890.5::numeric,
                               'name', 'Zoë ' || g || ' 𝄞', 'pad', repeat('x', 100)),
            '2025-01-01T00:00:00Z'::timestamptz + make_interval(mins => g * (1440 * $2 / $3)),
            'key-' || g, convert_to('key-' || g || '-é', 'UTF8'),
            jsonb_build_array(jsonb_build_array('trace-id', encode(convert_to('t-' || g, 'UTF8'), 'base64'))),
            sha256(convert_to('c' || g, 'UTF8'))
       FROM generate_series(0, $3 - 1) AS g
     RETURNING id`,
    [h.topics.leads, DAYS, DAYS * PER_DAY],
  );
  allIds = rows.map((r) => Number(r.id)).sort((a, b) => a - b);
  // A few rows left in the journal, after the archived days.
  await h.pool.query(
    `INSERT INTO event_journal (tenant_id, topic, payload, received_at, kafka_key)
     SELECT 'acme', $1, jsonb_build_object('tenant_id', 'acme', 'recent', g), now() - make_interval(hours => g), 'r' || g
       FROM generate_series(1, 20) AS g`,
    [h.topics.leads],
  );
  const recent = await h.pool.query<{ id: string }>(`SELECT id FROM event_journal WHERE payload ? 'recent'`);
  allIds = [...allIds, ...recent.rows.map((r) => Number(r.id))].sort((a, b) => a - b);

  worker = startWorker();
  await untilPrinted(worker, 'Temporal worker started');
  // What a replay from Postgres sends for every row, before any is archived.
  hotId = `a30-cold-hot-${uniqueSuffix()}`;
  const { handle, targetTopic } = await startReplay(hotId);
  const result = (await handle.result()) as { published: number };
  hot = new Map((await readReplayed(h.kafka, targetTopic, result.published)).map((m) => [m.from, m]));
  expect(hot.size).toBe(allIds.length);
  for (let d = 0; d < DAYS; d++) {
    const from = new Date(Date.UTC(2025, 0, 1 + d)).toISOString();
    const before = new Date(Date.UTC(2025, 0, 2 + d)).toISOString();
    const manifest = await archiveWindow(h.pool, store, { segment: `a30_day_${d}`, from, before });
    expect(manifest.rows).toBe(PER_DAY);
  }
}, 150_000);

afterAll(async () => {
  if (s3Pid) process.kill(s3Pid, 'SIGCONT');
  for (const child of children) child.kill('SIGKILL');
  await proxy?.close();
  for (const id of [`${queue}-dlq`, `${queue}-mnt`]) await deleteSchedule(h.config.temporal.address, id);
  await connection?.close();
  await store?.close();
  await h?.close();
});

it('S3 frozen mid cold replay, SIGTERM, new worker: exits 0 in time, every event once, byte for byte', async () => {
  const plans = fc.sample(
    fc.record({
      freezeAfterMs: fc.oneof(fc.integer({ min: 0, max: 400 }), fc.integer({ min: 400, max: 4500 })),
      termAfterMs: fc.integer({ min: 300, max: 2500 }),
      rate: fc.constantFrom(60, 100, 150),
      pageSize: fc.constantFrom(7, 25, 60),
    }),
    { numRuns: ROUNDS },
  );
  const outcomes: unknown[] = [];
  const failures: unknown[] = [];
  for (const [r, plan] of plans.entries()) {
    const workflowId = `a30-cold-${r}-${uniqueSuffix()}`;
    const { handle, targetTopic } = await startReplay(workflowId, {
      maxEventsPerSecond: plan.rate,
      pageSize: plan.pageSize,
    });
    await new Promise((res) => setTimeout(res, plan.freezeAfterMs));
    const requestsAtFreeze = proxy.requests;
    if (PROXY_FREEZE) proxy.freeze();
    else process.kill(s3Pid!, 'SIGSTOP');
    await new Promise((res) => setTimeout(res, plan.termAfterMs));
    const signalled = Date.now();
    worker.kill('SIGTERM');
    const exit = await Promise.race([
      exited(worker),
      new Promise((res) => setTimeout(() => res('running'), SHUTDOWN_TIMEOUT_MS + 10_000)),
    ]);
    const stopMs = Date.now() - signalled;
    worker.kill('SIGKILL');
    if (!PROXY_FREEZE) process.kill(s3Pid!, 'SIGCONT');
    proxy.thaw();
    worker = startWorker();
    await untilPrinted(worker, 'Temporal worker started');
    const result = (await Promise.race([
      handle.result().catch((err: Error) => ({ failed: err.message })),
      new Promise((res) => setTimeout(() => res({ failed: 'not finished in 60 s' }), 60_000)),
    ])) as { published?: number; matched?: number; status?: string; failed?: string };
    const messages = await readReplayed(h.kafka, targetTopic, allIds.length);
    const counts = new Map<number, number>();
    for (const m of messages) counts.set(m.from, (counts.get(m.from) ?? 0) + 1);
    const missing = allIds.filter((id) => !counts.has(id));
    const twice = [...counts].filter(([, n]) => n > 1).map(([id]) => id);
    const differs = messages
      .filter((m) => hot.has(m.from))
      .filter((m) => JSON.stringify(comparable(m, workflowId)) !== JSON.stringify(comparable(hot.get(m.from)!, hotId)))
      .map((m) => m.from);
    const outcome = {
      round: r,
      plan,
      requestsAtFreeze,
      exit,
      stopMs,
      status: result.status ?? result.failed,
      matched: result.matched,
      published: result.published,
      messages: messages.length,
      missing: missing.length,
      twice: twice.length,
      differs: differs.length,
    };
    console.log(JSON.stringify(outcome));
    outcomes.push(outcome);
    if (exit !== 0 || stopMs >= SHUTDOWN_TIMEOUT_MS || missing.length || twice.length || differs.length) {
      failures.push({ ...outcome, missingIds: missing.slice(0, 5), twiceIds: twice.slice(0, 5) });
    }
    if (result.status !== 'completed') failures.push({ round: r, status: result });
  }
  expect(failures).toEqual([]);
});

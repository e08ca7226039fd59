import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import readline from 'node:readline';
import type { Kafka } from 'kafkajs';
import pg from 'pg';
import { createPool } from '../shared/db';
import { createKafka } from '../shared/kafka';
import { createLogger } from '../shared/logger';
import { withDatabase } from './support/database';
import { benchConfig, machine, sleep, uniqueSuffix, waitUntil } from './support/env';
import { seedSeries } from './support/journal';
import { sampleConnections } from './support/connections';
import { benchTopics, createTopics, deleteTopics, groupWatcher, makeEvents, produceAll } from './support/kafka';
import { freePort } from './support/ports';
import { sampleRss, stopChild } from './support/process';
import { printTargets, writeResult, type Target } from './support/results';
import { run, type Run } from './support/sinks';
import { ratio, round, summarize } from './support/stats';
import type { BenchOptions } from './options';

const CLIENTS = 100;
/** How long the stream clients catch up before ingest starts, so that their load is in place when its clock starts. */
const SETTLE_MS = 3000;
const SEED_PART = 250_000;
/** A part of the seed may take longer than a statement is allowed in the service, on a busy machine. */
const SEED_TIMEOUT_MS = 600_000;
/** The product's defaults: ingest's pool and the API's own. The shared configuration gets both in one pool. */
const INGEST_POOL = 10;
const API_POOL = 4;
const ROWS = Number(process.env.BENCH_API_POOL_ROWS ?? 1_000_000);
const SERVICE = path.join(__dirname, 'support/pool-service.js');

/**
 * dedicated: the product in one process (the API on its own pool); shared: the API on ingest's pool; separate: the
 * API and ingest as two processes, as a deployment runs them.
 */
const MODES = ['dedicated', 'shared', 'separate'] as const;
type Mode = (typeof MODES)[number];

interface Measurement {
  mode: Mode;
  load: boolean;
  ingest: Run;
  /** Bytes the stream clients received per second while ingest ran (0 without load). */
  streamBytesPerSecond: number;
  /** Most connections seen at once per application_name while ingest ran (pg_stat_activity, every 50 ms). */
  connections: Record<string, number>;
  peakRssMb: number;
}

/**
 * Ingest's rate with and without 100 stream clients catching up from Last-Event-ID 0 on a journal of ROWS rows, in
 * the same run, for the API reading on its own pool (the product) and on the pool ingest commits on (built from the
 * same parts by bench/support/pool-service.ts; the product cannot be configured so). Ingest and API share one
 * process, as in `npm start`. Each measurement: N events produced to fresh topics beforehand, the service started
 * with ingest held, the clients connected (or not), then ingest released; events/s = N / (the group's committed
 * offsets reach the high watermarks − received_at of the first journaled row).
 */
export async function apiPoolBench({ events: count = 100_000, repeat }: BenchOptions) {
  const started = machine();
  const base = benchConfig();
  const log = createLogger('silent');
  const kafka = createKafka(base.kafka.brokers, 'crm-bench-api-pool', log);
  const measurements: Measurement[] = [];
  let seedSeconds = 0;
  await withDatabase(base.databaseUrl, 'api_pool', async (db) => {
    const pool = createPool(db.databaseUrl, 2, log, SEED_TIMEOUT_MS, 'crm-bench-seed');
    try {
      const t0 = Date.now();
      for (let offset = 0; offset < ROWS; offset += SEED_PART) {
        const part = Math.min(SEED_PART, ROWS - offset);
        await seedSeries(pool, {
          count: part,
          topics: ['apexflow.leads.created'],
          tenants: 50,
          from: new Date('2024-01-01T00:00:00Z'),
          stepMs: 100,
          offset,
        });
      }
      await pool.query('VACUUM ANALYZE event_journal');
      seedSeconds = (Date.now() - t0) / 1000;
      console.log(`[api-pool] journal of ${ROWS} rows seeded in ${seedSeconds} s`);
      for (let r = 0; r < repeat; r++) {
        for (const mode of MODES) {
          for (const load of [false, true]) {
            const m = await measure(kafka, db.databaseUrl, mode, load, count);
            measurements.push(m);
            console.log(
              `[api-pool] #${r + 1} ${mode} ${load ? `${CLIENTS} clients` : 'no load'}: ingest ${m.ingest.eventsPerSecond} ev/s, stream ${round(m.streamBytesPerSecond / 2 ** 20)} MiB/s, connections ${JSON.stringify(m.connections)}`,
            );
          }
        }
      }
    } finally {
      await pool.end();
    }
  });

  const of = (mode: Mode, load: boolean) => measurements.filter((m) => m.mode === mode && m.load === load);
  const rates = (mode: Mode, load: boolean) => summarize(of(mode, load).map((m) => m.ingest.eventsPerSecond));
  // Per repeat: the loaded rate over the idle rate measured just before it, in the same configuration.
  const perRepeat = (mode: Mode) =>
    of(mode, true).map((loaded, i) => ratio(loaded.ingest.eventsPerSecond, of(mode, false)[i].ingest.eventsPerSecond));
  const ratios = {
    dedicated: summarize(perRepeat('dedicated')),
    shared: summarize(perRepeat('shared')),
    separate: summarize(perRepeat('separate')),
  };
  const targets: Target[] = [
    {
      name: 'dedicated API pool: ingest with 100 catch-up clients / without',
      target: '>= 0.80',
      actual: ratios.dedicated.median,
      met: ratios.dedicated.median >= 0.8,
    },
    {
      name: 'API and ingest as separate processes: ingest with 100 catch-up clients / without',
      target: '>= 0.80',
      actual: ratios.separate.median,
      met: ratios.separate.median >= 0.8,
    },
    {
      name: 'dedicated ratio / shared ratio',
      target: '> 1',
      actual: ratio(ratios.dedicated.median, ratios.shared.median),
      met: ratios.dedicated.median > ratios.shared.median,
    },
  ];
  const file = writeResult('api-pool', started, {
    parameters: {
      journalRows: ROWS,
      events: count,
      repeat,
      clients: CLIENTS,
      settleMs: SETTLE_MS,
      streamMaxBacklog: ROWS,
      pools: {
        dedicated: { ingest: INGEST_POOL, api: API_POOL },
        shared: { both: INGEST_POOL + API_POOL },
        separate: { ingest: INGEST_POOL, api: API_POOL },
      },
      seedSeconds,
    },
    method: {
      service:
        'node --max-old-space-size=512 dist/bench/support/pool-service.js <mode>: ingest and API in one process, as npm start; dedicated = the product (startApiComponent, its own pool crm-events-sink-api), shared = buildApp on the pool ingest commits on, as large as both pools together; separate = two processes, the API alone (startApiComponent) and ingest alone, as `cli api` and `cli ingest` (peak RSS is the ingest process)',
      load: `${CLIENTS} SSE clients in the benchmark process, Last-Event-ID: 0, STREAM_MAX_BACKLOG = the journal size (the catch-up lasts the whole measurement), reading as fast as they can and counting bytes (no parsing); connected ${SETTLE_MS} ms before ingest is released`,
      ingest:
        'N events (50 tenants, 2 topics x 3 partitions) produced to fresh topics before the service starts; eventsPerSecond = N / (committed offsets reach the high watermarks - received_at of the first journaled row of those topics)',
      ratio: 'per repeat, ingest events/s with load / without load, same configuration, measured one after the other',
    },
    eventsPerSecond: {
      dedicated: { noLoad: rates('dedicated', false), withClients: rates('dedicated', true) },
      shared: { noLoad: rates('shared', false), withClients: rates('shared', true) },
      separate: { noLoad: rates('separate', false), withClients: rates('separate', true) },
    },
    ratios,
    raw: measurements,
    targets,
  });
  printTargets('api-pool', targets);
  console.log(`[api-pool] wrote ${file}`);
}

/** One measurement: fresh topics and group, the service process, optional stream clients, ingest timed. */
async function measure(
  kafka: Kafka,
  databaseUrl: string,
  mode: Mode,
  load: boolean,
  count: number,
): Promise<Measurement> {
  const suffix = uniqueSuffix();
  const topics = benchTopics(suffix);
  const topicList = [topics.leads, topics.jobs];
  const groupId = `bench-api-pool-${suffix}`;
  await createTopics(kafka, topicList, 3);
  const producer = kafka.producer();
  await producer.connect();
  await produceAll(producer, makeEvents(count, topics, 50));
  await producer.disconnect();
  const port = await freePort();
  const spawnService = (role: 'dedicated' | 'shared' | 'api' | 'ingest') =>
    spawn(process.execPath, ['--max-old-space-size=512', SERVICE, role], {
      env: {
        ...process.env,
        LOG_LEVEL: 'warn',
        METRICS_PORT: '0',
        DATABASE_URL: databaseUrl,
        DATABASE_POOL_SIZE: String(mode === 'shared' ? INGEST_POOL + API_POOL : INGEST_POOL),
        API_DATABASE_POOL_SIZE: String(API_POOL),
        KAFKA_TOPICS: topicList.join(','),
        KAFKA_GROUP_ID: groupId,
        KAFKA_FROM_BEGINNING: 'true',
        API_HOST: '127.0.0.1',
        API_PORT: String(port),
        STREAM_MAX_CLIENTS: String(CLIENTS * 2),
        STREAM_MAX_BACKLOG: String(ROWS),
        AUTH_JWT_SECRET: '',
        AUTH_MODE: '',
      },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
  // The process ingest runs in (timed, its RSS sampled), and in `separate` mode the API's own process.
  const child = spawnService(mode === 'separate' ? 'ingest' : mode);
  const apiChild = mode === 'separate' ? spawnService('api') : undefined;
  for (const c of [child, apiChild]) {
    c?.stderr?.on('data', (chunk: Buffer) => {
      if (process.env.BENCH_LOG_LEVEL) process.stderr.write(chunk);
    });
  }
  const saying = (c: ChildProcess) => readline.createInterface({ input: c.stdout! });
  const lines = saying(child);
  const apiLines = apiChild ? saying(apiChild) : undefined;
  // What a service process said last (its log lines go to stdout at LOG_LEVEL warn): named when it dies early.
  const last = new Map<ChildProcess, string[]>();
  const said = (word: string, c: ChildProcess = child, from = lines) =>
    new Promise<void>((resolve, reject) => {
      from.on('line', (line) => {
        const kept = last.get(c) ?? [];
        last.set(c, [...kept.slice(-4), line]);
        if (line === word) resolve();
      });
      c.once('exit', (code) =>
        reject(
          new Error(
            `pool-service exited with code ${code} before "${word}"; it said last:\n${(last.get(c) ?? []).join('\n')}`,
          ),
        ),
      );
    });
  const clients: StreamReader[] = [];
  let connections: ReturnType<typeof sampleConnections> | undefined;
  try {
    await said('ready');
    if (apiChild && apiLines) await said('ready', apiChild, apiLines);
    if (load) {
      clients.push(...(await Promise.all(Array.from({ length: CLIENTS }, () => readStream(port)))));
      await sleep(SETTLE_MS);
      const refused = clients.filter((c) => c.status !== 200 || c.bytes === 0).length;
      if (refused > 0) throw new Error(`${refused} of ${CLIENTS} stream clients got nothing before ingest started`);
    }
    const rss = sampleRss(child.pid);
    connections = sampleConnections(databaseUrl);
    const bytesBefore = clients.reduce((sum, c) => sum + c.bytes, 0);
    const released = Date.now();
    child.stdin!.write('go\n');
    await said('ingesting');
    const watcher = await groupWatcher(kafka, groupId, topicList);
    try {
      await waitUntil(async () => (await watcher.lag()) === 0, `${count} events committed by ${groupId}`, 600_000, 50);
    } finally {
      await watcher.close();
    }
    const finished = Date.now();
    const streamBytes = clients.reduce((sum, c) => sum + c.bytes, 0) - bytesBefore;
    const seen = await connections.stop();
    const most = Object.fromEntries(
      Object.entries(seen)
        .filter(([app]) => app.startsWith('crm-events-sink'))
        .map(([app, { most }]) => [app, most]),
    );
    const memory = rss.stop();
    const db = new pg.Client({ connectionString: databaseUrl });
    await db.connect();
    const { rows } = await db
      .query<{ n: number; first: Date }>(
        'SELECT count(*)::int AS n, min(received_at) AS first FROM event_journal WHERE topic = ANY($1::text[])',
        [topicList],
      )
      .finally(() => db.end());
    if (rows[0].n !== count) throw new Error(`${mode}: ingest journaled ${rows[0].n} of ${count} events`);
    return {
      mode,
      load,
      ingest: run(count, finished - rows[0].first.getTime()),
      streamBytesPerSecond: Math.round(streamBytes / ((finished - released) / 1000)),
      connections: most,
      peakRssMb: memory.vmHwmMb ?? memory.peakRssMb,
    };
  } finally {
    await connections?.stop(); // idempotent: a failed measurement must not leave the sampler on the database
    for (const c of clients) c.close();
    lines.close();
    apiLines?.close();
    await stopChild(child as ChildProcess);
    if (apiChild) await stopChild(apiChild as ChildProcess);
    await deleteTopics(kafka, topicList);
  }
}

interface StreamReader {
  status: number;
  bytes: number;
  close(): void;
}

/** A stream client resuming from id 0 that reads as fast as it can and only counts what it gets. */
function readStream(port: number): Promise<StreamReader> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/crm-events', headers: { 'last-event-id': '0' } }, (res) => {
      const reader: StreamReader = { status: res.statusCode ?? 0, bytes: 0, close: () => req.destroy() };
      res.on('data', (chunk: Buffer) => (reader.bytes += chunk.length));
      resolve(reader);
    });
    req.on('error', (err) => (err.message === 'socket hang up' ? undefined : reject(err)));
  });
}

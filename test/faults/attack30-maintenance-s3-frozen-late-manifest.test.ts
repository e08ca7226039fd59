import { Client, Connection } from '@temporalio/client';
import net from 'node:net';
import type { ChildProcess } from 'node:child_process';
import { createArchiveStore, findManifest, readSegment, listSegments, type ArchiveStore } from '../../archive';
import { createJournalPartition, listJournalPartitions } from '../../repository/journal-partitions';
import { putRetentionRows } from '../../repository/retention';
import { withTransaction } from '../../shared/db';
import { shrinkConversionPartition } from '../support/journal-history';
import { createTestBucket } from '../support/s3';
import { kafkaBrokerPid } from '../support/stack';
import { deleteSchedule } from '../support/temporal';
import { exited, spawnCli, untilPrinted } from '../support/ingest-process';
import { createSinkHarness, type SinkHarness } from '../support/sink';
import { uniqueSuffix } from '../support/env';

/**
 * attack30 (area A, maintenance): journal maintenance archiving expired partitions to S3 on a real `worker`; the S3
 * server is frozen (SIGSTOP of its process) at a chosen request: as the manifest PUT of a segment reaches it (the
 * server applies it once resumed, after the worker gave up on it), right after that PUT, or at a random request;
 * SIGTERM to the worker while it is frozen; SIGCONT and a new worker, which finishes the maintenance.
 *
 * Invariants: the worker exits 0 within SHUTDOWN_TIMEOUT; a partition is dropped only when every one of its rows is in
 * a segment recorded by the run that reads back whole (readSegment, verify); a partition kept still holds every row;
 * no object under segments/ is outside what the manifests account for. A30_CUT=at-manifest|after-manifest|<n>.
 */
jest.setTimeout(170_000);

const SHUTDOWN_TIMEOUT_MS = 10_000;

const MONTHS = 4;
const PER_MONTH = 3000;
// A30_MIXED=1: each partition also holds rows of a topic kept for ever, so retention deletes the expired topic's rows
// (delete_rows steps, a segment per topic slice) instead of dropping the partition.
const MIXED = process.env.A30_MIXED === '1';
let h: SinkHarness;
let bucket: Awaited<ReturnType<typeof createTestBucket>>;
let store: ArchiveStore;
let connection: Connection;
let client: Client;
const queue = `a30-mntcut-${uniqueSuffix()}`;
const seeded = new Map<string, number[]>();

/**
 * A TCP proxy to the S3 server that watches request lines; once `freezeWhen` says so for one, it SIGSTOPs the S3
 * server itself before passing that request on (so the request and every later one meet a stopped server).
 */
interface TriggerProxy {
  port: number;
  lines: string[];
  frozenAt?: string;
  arm(freezeWhen: (line: string, index: number) => boolean): void;
  thaw(): void;
  close(): Promise<void>;
}

async function triggerProxy(host: string, port: number, serverPid: number): Promise<TriggerProxy> {
  const sockets = new Set<net.Socket>();
  let frozen = false;
  let freezeWhen: ((line: string, index: number) => boolean) | undefined;
  const state: TriggerProxy = {
    port: 0,
    lines: [],
    arm(fn) {
      state.lines = [];
      state.frozenAt = undefined;
      freezeWhen = fn;
    },
    thaw() {
      process.kill(serverPid, 'SIGCONT');
      frozen = false;
      freezeWhen = undefined;
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    async close() {
      state.thaw();
      await new Promise((r) => server.close(r));
    },
  };
  const server = net.createServer((clientSocket) => {
    const upstream = net.connect({ host, port });
    sockets.add(clientSocket);
    sockets.add(upstream);
    clientSocket.on('error', () => upstream.destroy());
    upstream.on('error', () => clientSocket.destroy());
    clientSocket.on('close', () => upstream.destroy());
    upstream.on('close', () => clientSocket.destroy());
    upstream.pipe(clientSocket);
    clientSocket.on('data', (chunk: Buffer) => {
      const line = chunk.toString('latin1', 0, Math.min(chunk.length, 300)).split('\r\n')[0];
      if (/^(GET|PUT|POST|DELETE|HEAD) /.test(line)) {
        const index = state.lines.length;
        state.lines.push(line);
        if (!frozen && freezeWhen?.(line, index)) {
          frozen = true;
          process.kill(serverPid, 'SIGSTOP');
          state.frozenAt = `${index}: ${line}`;
        }
      }
      upstream.write(chunk);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.port = (server.address() as net.AddressInfo).port;
  return state;
}

let proxy: TriggerProxy;
let s3Pid: number | undefined;
const children = new Set<ChildProcess>();

beforeAll(async () => {
  h = await createSinkHarness('a30mntcut');
  bucket = await createTestBucket('a30mntcut');
  store = createArchiveStore({ ...h.config.archive, store: 's3', s3: bucket.config });
  const s3 = new URL(bucket.config.endpoint!);
  s3Pid = kafkaBrokerPid([s3.host]);
  proxy = await triggerProxy(s3.hostname, Number(s3.port), s3Pid);
  const start = new Date(Date.UTC(2025, 0, 1));
  const first = await shrinkConversionPartition(h.pool, start);
  for (let m = 0; ; m++) {
    const from = new Date(Date.UTC(2025, m, 1));
    if (from >= first) break;
    const to = new Date(Date.UTC(2025, m + 1, 1));
    const name = `event_journal_p${from.getUTCFullYear()}_${String(from.getUTCMonth() + 1).padStart(2, '0')}`;
    await withTransaction(h.pool, (c) => createJournalPartition(c, name, from, to < first ? to : first));
    if (m < MONTHS) {
      const { rows } = await h.pool.query<{ id: string }>(
        `INSERT INTO event_journal (tenant_id, topic, payload, received_at, kafka_key)
         SELECT 'acme', $1, jsonb_build_object('tenant_id', 'acme', 'n', n, 'pad', md5(n::text) || repeat('y', 150)),
                $2::timestamptz + n * interval '10 minutes', 'k' || n
           FROM generate_series(1, $3) AS n RETURNING id`,
        [h.topics.leads, from, PER_MONTH],
      );
      seeded.set(
        name,
        rows.map((r) => Number(r.id)),
      );
      if (MIXED) {
        await h.pool.query(
          `INSERT INTO event_journal (tenant_id, topic, payload, received_at)
           SELECT 'acme', $1, jsonb_build_object('tenant_id', 'acme', 'kept', n), $2::timestamptz + n * interval '1 hour'
             FROM generate_series(1, 50) AS n`,
          [h.topics.jobs, from],
        );
      }
    }
  }
  await putRetentionRows(h.pool, { [h.topics.leads]: 30, [h.topics.jobs]: MIXED ? null : 30 }, 'attack30');
  connection = await Connection.connect({ address: h.config.temporal.address });
  client = new Client({ connection, namespace: h.config.temporal.namespace });
}, 120_000);

afterAll(async () => {
  if (s3Pid) process.kill(s3Pid, 'SIGCONT');
  for (const child of children) child.kill('SIGKILL');
  await proxy?.close();
  for (const id of [`${queue}-dlq`, `${queue}-mnt`]) await deleteSchedule(h.config.temporal.address, id);
  await connection?.close();
  await store?.close();
  await h?.close();
});

function startWorker(): ChildProcess {
  const s3 = bucket.config;
  const worker = spawnCli('worker', {
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
  children.add(worker);
  worker.once('exit', () => children.delete(worker));
  return worker;
}

it('S3 frozen mid-maintenance (late manifest PUT), SIGTERM, new worker: no partition dropped without its segment', async () => {
  const cutEnv =
    process.env.A30_CUT ??
    ['at-manifest', 'after-manifest', String(Math.floor(Math.random() * 40))][Math.floor(Math.random() * 3)];
  const manifestPut = /^PUT \/[^/]+\/segments\/[^/]+\/manifest\.json/;
  let sawManifest = false;
  proxy.arm((line, index) => {
    if (cutEnv === 'at-manifest') return manifestPut.test(line);
    if (cutEnv === 'after-manifest') {
      if (sawManifest) return true;
      sawManifest = manifestPut.test(line);
      return false;
    }
    return index === Number(cutEnv);
  });
  let worker = startWorker();
  await untilPrinted(worker, 'Temporal worker started');
  const workflowId = `a30-mnt-${uniqueSuffix()}`;
  const handle = await client.workflow.start('journalMaintenanceWorkflow', {
    taskQueue: queue,
    workflowId,
    args: [{ trigger: 'operator', requestedBy: 'attack30' }],
  });
  const deadline = Date.now() + 40_000;
  while (!proxy.frozenAt && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
  await new Promise((res) => setTimeout(res, 500 + Math.floor(Math.random() * 1500)));
  const signalled = Date.now();
  worker.kill('SIGTERM');
  const exit = await Promise.race([
    exited(worker),
    new Promise((res) => setTimeout(() => res('running'), SHUTDOWN_TIMEOUT_MS + 10_000)),
  ]);
  const stopMs = Date.now() - signalled;
  worker.kill('SIGKILL');
  const frozenAt = proxy.frozenAt;
  proxy.thaw();
  worker = startWorker();
  await untilPrinted(worker, 'Temporal worker started');
  const result = await Promise.race([
    handle.result().catch((err: Error) => ({ failed: err.message })),
    new Promise((res) => setTimeout(() => res({ failed: 'not finished in 80 s' }), 80_000)),
  ]);
  worker.kill('SIGTERM');
  await Promise.race([exited(worker), new Promise((res) => setTimeout(res, 15_000))]);

  const { rows: audit } = await h.pool.query<{ actions: Array<Record<string, unknown>> }>(
    `SELECT actions FROM lifecycle_audit WHERE workflow_id = $1`,
    [workflowId],
  );
  const actions = (audit[0]?.actions ?? []).filter((a) => a.action === 'segment_archived');
  const recordedFor = (partition: string) =>
    actions.find((a) => a.partition === partition && (!MIXED || a.topic === h.topics.leads));
  const partitions = new Set((await listJournalPartitions(h.pool)).map((p) => p.name));
  const problems: unknown[] = [];
  const states: Record<string, string> = {};
  for (const [name, ids] of seeded) {
    let left = 0;
    if (partitions.has(name)) {
      const { rows } = await h.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${name} WHERE topic = $1`, [
        h.topics.leads,
      ]);
      left = rows[0].n;
      if (MIXED) {
        const kept = await h.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${name} WHERE topic = $1`, [
          h.topics.jobs,
        ]);
        if (kept.rows[0].n !== 50) problems.push({ name, keptTopicRows: kept.rows[0].n });
      }
    }
    if (left === ids.length) {
      states[name] = `kept (${left} rows)`;
      continue;
    }
    if (left !== 0) problems.push({ name, partial: left, seeded: ids.length });
    const record = recordedFor(name);
    const segment = record ? String(record.segment) : name;
    const manifest = await findManifest(store, segment);
    const archived: number[] = [];
    let readError: string | undefined;
    if (manifest) {
      try {
        for await (const row of readSegment(store, manifest, { verify: true })) archived.push(row.id);
      } catch (err) {
        readError = (err as Error).message;
      }
    }
    const want = [...ids].sort((a, b) => a - b);
    const got = [...archived].sort((a, b) => a - b);
    states[name] =
      `removed; segment ${segment} ${manifest ? `${manifest.rows} rows` : 'missing'}; recorded ${!!record}`;
    if (!manifest || readError || JSON.stringify(want) !== JSON.stringify(got) || !record) {
      problems.push({
        name,
        segment,
        manifest: !!manifest,
        readError,
        archived: got.length,
        seeded: want.length,
        recorded: !!record,
      });
    }
  }
  const accounted = new Set<string>();
  for (const m of await listSegments(store)) {
    accounted.add(`segments/${m.segment}/manifest.json`);
    accounted.add(m.file.key);
  }
  const stray: string[] = [];
  for await (const object of store.list('segments/')) if (!accounted.has(object.key)) stray.push(object.key);
  console.log(JSON.stringify({ cut: cutEnv, frozenAt, exit, stopMs, result, states, problems, stray }));
  expect({ exit, inTime: stopMs < SHUTDOWN_TIMEOUT_MS, problems, stray }).toEqual({
    exit: 0,
    inTime: true,
    problems: [],
    stray: [],
  });
});

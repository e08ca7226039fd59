import { Client, Connection } from '@temporalio/client';
import net from 'node:net';
import type { ChildProcess } from 'node:child_process';
import fc from 'fast-check';
import { createArchiveStore, findManifest, readSegment, listSegments, type ArchiveStore } from '../../archive';
import { createJournalPartition, listJournalPartitions } from '../../repository/journal-partitions';
import { putRetentionRows } from '../../repository/retention';
import { withTransaction } from '../../shared/db';
import { shrinkConversionPartition } from '../support/journal-history';
import { createTestBucket } from '../support/s3';
import { deleteSchedule } from '../support/temporal';
import { exited, spawnCli, untilPrinted } from '../support/ingest-process';
import { createSinkHarness, type SinkHarness } from '../support/sink';
import { uniqueSuffix } from '../support/env';

/**
 * attack30 (area C): journal maintenance archiving expired partitions to S3 through a connection that misbehaves:
 * each TCP connection to the S3 server is, at random (fast-check, per connection), passed through, cut after a random
 * number of bytes in either direction (mid-body), or slowed (every chunk delayed). A real `worker` process runs the
 * maintenance; its activities retry until the run completes.
 *
 * Invariant (docs/lifecycle.md, docs/archive.md "Writing and verifying"): a partition is dropped only when every one of
 * its rows is in a segment recorded by the run (segment_archived) that reads back whole (readSegment with verify: the
 * row count and sha256 of the manifest) — rows dropped without it are lost; a partition kept still holds every row;
 * no object under segments/ is outside what the manifests account for.
 */
jest.setTimeout(170_000);

const MONTHS = 4;
const PER_MONTH = 3000;
const CUT_SHARE = Number(process.env.A30_CUT_SHARE ?? 0.35);
// A30_MIXED=1: each partition also holds rows of a topic kept for ever, so retention deletes the expired topic's rows
// (delete_rows steps, a segment per topic slice) instead of dropping the partition.
const MIXED = process.env.A30_MIXED === '1';
let h: SinkHarness;
let bucket: Awaited<ReturnType<typeof createTestBucket>>;
let store: ArchiveStore;
let connection: Connection;
let client: Client;
let worker: ChildProcess | undefined;
const queue = `a30-mntcut-${uniqueSuffix()}`;
const seeded = new Map<string, number[]>();

type Mode = { kind: 'pass' } | { kind: 'cut'; up: boolean; after: number } | { kind: 'slow'; delayMs: number };
const modes = fc.oneof(
  { weight: Math.round((1 - CUT_SHARE) * 100), arbitrary: fc.constant<Mode>({ kind: 'pass' }) },
  {
    weight: Math.round(CUT_SHARE * 80),
    arbitrary: fc.record({
      kind: fc.constant('cut' as const),
      up: fc.boolean(),
      after: fc.oneof(fc.integer({ min: 0, max: 2000 }), fc.integer({ min: 2000, max: 400_000 })),
    }),
  },
  {
    weight: Math.round(CUT_SHARE * 20),
    arbitrary: fc.record({ kind: fc.constant('slow' as const), delayMs: fc.integer({ min: 1, max: 150 }) }),
  },
);

const stats = { connections: 0, cut: 0, slow: 0 };
let server: net.Server;
const sockets = new Set<net.Socket>();

async function flakyProxy(host: string, port: number): Promise<number> {
  const pool = fc.sample(modes, { numRuns: 5000 });
  server = net.createServer((c) => {
    const mode = pool[stats.connections++ % pool.length];
    const u = net.connect({ host, port });
    sockets.add(c);
    sockets.add(u);
    c.on('error', () => u.destroy());
    u.on('error', () => c.destroy());
    c.on('close', () => u.destroy());
    u.on('close', () => c.destroy());
    let up = 0;
    let down = 0;
    const cut = () => {
      stats.cut++;
      c.destroy();
      u.destroy();
    };
    const relay = (from: net.Socket, to: net.Socket, isUp: boolean) => {
      from.on('data', (chunk: Buffer) => {
        if (mode.kind === 'cut' && mode.up === isUp) {
          const sent = isUp ? up : down;
          if (sent + chunk.length > mode.after) {
            to.write(chunk.subarray(0, Math.max(0, mode.after - sent)), () => cut());
            return;
          }
        }
        if (isUp) up += chunk.length;
        else down += chunk.length;
        if (mode.kind === 'slow') {
          from.pause();
          setTimeout(() => {
            to.write(chunk);
            from.resume();
          }, mode.delayMs);
        } else to.write(chunk);
      });
    };
    if (mode.kind === 'slow') stats.slow++;
    relay(c, u, true);
    relay(u, c, false);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as net.AddressInfo).port;
}

let proxyPort: number;

beforeAll(async () => {
  h = await createSinkHarness('a30mntcut');
  bucket = await createTestBucket('a30mntcut');
  store = createArchiveStore({ ...h.config.archive, store: 's3', s3: bucket.config });
  const s3 = new URL(bucket.config.endpoint!);
  proxyPort = await flakyProxy(s3.hostname, Number(s3.port));
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
  worker?.kill('SIGKILL');
  for (const s of sockets) s.destroy();
  await new Promise((r) => server?.close(r));
  for (const id of [`${queue}-dlq`, `${queue}-mnt`]) await deleteSchedule(h.config.temporal.address, id);
  await connection?.close();
  await store?.close();
  await h?.close();
});

it('maintenance through an S3 connection cut mid-body at random: no partition dropped without its verified segment', async () => {
  const s3 = bucket.config;
  worker = spawnCli('worker', {
    DATABASE_URL: h.config.databaseUrl,
    KAFKA_TOPICS: h.config.kafka.topics.join(','),
    TEMPORAL_TASK_QUEUE: queue,
    DLQ_RETRY_SCHEDULE_ID: `${queue}-dlq`,
    MAINTENANCE_SCHEDULE_ID: `${queue}-mnt`,
    ARCHIVE_STORE: 's3',
    ARCHIVE_S3_ENDPOINT: `http://127.0.0.1:${proxyPort}`,
    ARCHIVE_S3_BUCKET: s3.bucket,
    ARCHIVE_S3_REGION: s3.region,
    ARCHIVE_S3_ACCESS_KEY_ID: s3.accessKeyId ?? '',
    ARCHIVE_S3_SECRET_ACCESS_KEY: s3.secretAccessKey ?? '',
    SHUTDOWN_TIMEOUT: '10s',
    LOG_LEVEL: 'info',
  });
  await untilPrinted(worker, 'Temporal worker started');
  const workflowId = `a30-mnt-${uniqueSuffix()}`;
  const handle = await client.workflow.start('journalMaintenanceWorkflow', {
    taskQueue: queue,
    workflowId,
    args: [{ trigger: 'operator', requestedBy: 'attack30' }],
  });
  const result = await Promise.race([
    handle.result().catch((err: Error) => ({ failed: err.message })),
    new Promise((res) => setTimeout(() => res({ failed: 'not finished in 100 s' }), 100_000)),
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
  console.log(JSON.stringify({ result, stats, states, problems, stray }));
  expect({ problems, stray }).toEqual({ problems: [], stray: [] });
});

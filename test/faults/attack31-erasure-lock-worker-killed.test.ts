import { Client, Connection } from '@temporalio/client';
import type { ChildProcess } from 'node:child_process';
import {
  createArchiveStore,
  listSegments,
  readSegment,
  writeSegment,
  type ArchiveRow,
  type ArchiveStore,
} from '../../archive';
import { subjectHash, type ErasureTarget } from '../../lifecycle/erasure-target';
import { storeErasureSubject } from '../../repository/erasure';
import { ensureServiceKey } from '../../repository/service-keys';
import { advisoryKey } from '../../shared/db';
import { plainRow } from '../support/archive';
import { findValue } from '../support/erasure';
import { createTestBucket } from '../support/s3';
import { deleteSchedule } from '../support/temporal';
import { exited, spawnCli, untilPrinted } from '../support/ingest-process';
import { createSinkHarness, type SinkHarness } from '../support/sink';
import { uniqueSuffix } from '../support/env';

/**
 * attack31 (fix c174e01; HELD, kept as a regression): the worker running erasure A's archive pass is SIGKILLed 1.5 s
 * after A took the pass's session lock; erasure B is started and a new worker comes up. The lock goes with the dead
 * connection; A's activity is retried after its heartbeat timeout.
 * Invariants: both complete; no archive file holds A's or B's subject; every other row in the archive exactly once.
 * Observed (1 run): both completed (A archive_rows 17142, B 9351), each segment at generation 3, no subject row,
 * none missing or twice; 81 s (the 1 min heartbeat timeout).
 */
jest.setTimeout(240_000);

const SEGMENTS = 3;
const ROWS = 40_000;
let h: SinkHarness;
let bucket: Awaited<ReturnType<typeof createTestBucket>>;
let store: ArchiveStore;
let connection: Connection;
let client: Client;
const children = new Set<ChildProcess>();
const queue = `a31-erase-kill-${uniqueSuffix()}`;

beforeAll(async () => {
  h = await createSinkHarness('a31erkill');
  bucket = await createTestBucket('a31erkill');
  store = createArchiveStore({ ...h.config.archive, store: 's3', s3: bucket.config });
  connection = await Connection.connect({ address: h.config.temporal.address });
  client = new Client({ connection, namespace: h.config.temporal.namespace });
}, 120_000);

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
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
    ARCHIVE_S3_ENDPOINT: s3.endpoint ?? '',
    ARCHIVE_S3_BUCKET: s3.bucket,
    ARCHIVE_S3_REGION: s3.region,
    ARCHIVE_S3_ACCESS_KEY_ID: s3.accessKeyId ?? '',
    ARCHIVE_S3_SECRET_ACCESS_KEY: s3.secretAccessKey ?? '',
    SHUTDOWN_TIMEOUT: '10s',
    LOG_LEVEL: 'info',
  });
  children.add(worker);
  worker.once('exit', () => children.delete(worker));
  return worker;
}

it('worker SIGKILLed mid-pass holding the lock, new worker, second erasure: no subject left, every other row once', async () => {
  const valueA = `a31-kill-A-${uniqueSuffix()}@example.com`;
  const valueB = `a31-kill-B-${uniqueSuffix()}@example.com`;
  const kept: number[] = [];
  for (let s = 0; s < SEGMENTS; s++) {
    const rows: ArchiveRow[] = [];
    const base = 7_000_000 + s * 100_000;
    for (let i = 1; i <= ROWS; i++) {
      const email = i % 7 === 0 ? valueA : i % 11 === 0 ? valueB : `k${i}@example.com`;
      if (email.startsWith('k')) kept.push(base + i);
      rows.push(plainRow(base + i, JSON.stringify({ tenant_id: 'acme', n: i, email })));
    }
    await writeSegment(store, { segment: `a31_kill_${s}`, table: 'event_journal', rows, expectedRows: rows.length });
  }
  const hashes: string[] = [];
  for (const value of [valueA, valueB]) {
    const target: ErasureTarget = { kind: 'subject', field: 'email', value };
    const hash = subjectHash(await ensureServiceKey(h.pool, 'erasure'), target);
    await storeErasureSubject(h.pool, hash, target);
    hashes.push(hash);
  }
  const worker = startWorker();
  await untilPrinted(worker, 'Temporal worker started');
  const key = advisoryKey('erasure-archive-pass');
  const classid = Number((BigInt.asUintN(64, key) >> 32n) & 0xffffffffn);
  const objid = Number(BigInt.asUintN(64, key) & 0xffffffffn);
  const ids = [`a31-kill-A-${uniqueSuffix()}`, `a31-kill-B-${uniqueSuffix()}`];
  await client.workflow.start('erasureWorkflow', {
    taskQueue: queue,
    workflowId: ids[0],
    args: [{ subjectHash: hashes[0], requestedBy: 'attack31' }],
  });
  let holder: number | undefined;
  for (let i = 0; i < 600 && holder === undefined; i++) {
    const { rows } = await h.pool.query<{ pid: number }>(
      `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = $1 AND objid = $2`,
      [classid, objid],
    );
    holder = rows[0]?.pid;
    if (holder === undefined) await new Promise((r) => setTimeout(r, 50));
  }
  expect(holder).toBeDefined();
  // What idle_session_timeout (or a cut connection) does to the idle session holding the lock.
  await new Promise((r) => setTimeout(r, 1500));
  worker.kill('SIGKILL');
  await exited(worker);
  const worker2 = startWorker();
  await untilPrinted(worker2, 'Temporal worker started');
  await client.workflow.start('erasureWorkflow', {
    taskQueue: queue,
    workflowId: ids[1],
    args: [{ subjectHash: hashes[1], requestedBy: 'attack31' }],
  });
  const results = await Promise.all(
    ids.map((id) =>
      Promise.race([
        client.workflow
          .getHandle(id)
          .result()
          .then((r: unknown) => JSON.stringify(r))
          .catch((err: Error) => `failed: ${err.message}`),
        new Promise<string>((res) => setTimeout(() => res('not finished in 150 s'), 150_000)),
      ]),
    ),
  );
  worker2.kill('SIGTERM');
  await Promise.race([exited(worker2), new Promise((res) => setTimeout(res, 15_000))]);
  worker2.kill('SIGKILL');

  const seen = new Map<number, number>();
  const subjectRows: string[] = [];
  for (const manifest of await listSegments(store)) {
    for await (const row of readSegment(store, manifest, { verify: false })) {
      seen.set(row.id, (seen.get(row.id) ?? 0) + 1);
      if (row.payload.includes(valueA) || row.payload.includes(valueB))
        subjectRows.push(`${manifest.segment}:${row.id}`);
    }
  }
  // Every object in the bucket, whatever manifest points at it.
  const objects: string[] = [];
  for await (const object of store.list('segments/')) objects.push(object.key);
  const found = [...(await findValue(h.pool, store, valueA)), ...(await findValue(h.pool, store, valueB))];
  const missing = kept.filter((id) => !seen.has(id));
  const twice = [...seen].filter(([, n]) => n > 1).map(([id]) => id);
  console.log(
    `results ${JSON.stringify(results)}; subject rows still in force ${subjectRows.length} ` +
      `(first ${subjectRows.slice(0, 3).join(', ')}); kept rows missing ${missing.length}, twice ${twice.length}; ` +
      `objects ${objects.join(', ')}; subject found in ${JSON.stringify(found)}`,
  );
  expect({
    results: results.map((r) => !r.startsWith('failed') && !r.startsWith('not finished')),
    subjectRows: subjectRows.length,
    found,
    missing: missing.length,
    twice: twice.length,
  }).toEqual({ results: [true, true], subjectRows: 0, found: [], missing: 0, twice: 0 });
});

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
 * attack31 (fix c174e01, "two erasures never rewrite a segment at once"): the archive pass's session advisory lock
 * (shared/db.ts withSessionLock) lives as long as the one idle connection it was taken on, and the pass never checks
 * it still has it. That connection sits idle for the whole pass (hours on a big archive): a DBA's
 * idle_session_timeout, a pgbouncer/NAT idle cut, a pg_terminate_backend, a network blip — the server ends the session
 * and releases the lock, the client's 'error' is only remembered (broken) for its release at the end, and the pass
 * goes on rewriting segments. A second erasure polling for the lock takes it within a second and rewrites the same
 * segments into the same next-generation keys: the race the lock was added for.
 *
 * Here: erasure A's lock connection is terminated (pg_terminate_backend, as idle_session_timeout would) as soon as it
 * holds the lock; erasure B is started at the same moment. Invariants: both complete; no archive file holds A's or
 * B's subject; every row of neither subject is in the archive exactly once.
 *
 * Observed (3 segments of 40 000 rows): both erasures "completed" (A: archive_rows 17142, B: 9351, 3 segments each),
 * yet 6234 rows of B's subject are in force in a31_lost_0.g2 and a31_lost_1.g2 (A's rewrite of generation 2, from
 * generation 1, overwrote or switched after B's); no kept row missing or twice.
 * Suspected cause: shared/db.ts withSessionLock (the 'error' of the lock's client is only kept for its release; fn
 * goes on) and activities/erasure.ts eraseArchiveRows (no check that the lock is still held before a rewrite or its
 * manifest switch; next-generation keys are not conditional writes).
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
const queue = `a31-erase-lost-${uniqueSuffix()}`;

beforeAll(async () => {
  h = await createSinkHarness('a31erlost');
  bucket = await createTestBucket('a31erlost');
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

it('the lock connection of an erasure pass is cut, a second erasure runs: no subject left, every other row once', async () => {
  const valueA = `a31-lost-A-${uniqueSuffix()}@example.com`;
  const valueB = `a31-lost-B-${uniqueSuffix()}@example.com`;
  const kept: number[] = [];
  for (let s = 0; s < SEGMENTS; s++) {
    const rows: ArchiveRow[] = [];
    const base = 7_000_000 + s * 100_000;
    for (let i = 1; i <= ROWS; i++) {
      const email = i % 7 === 0 ? valueA : i % 11 === 0 ? valueB : `k${i}@example.com`;
      if (email.startsWith('k')) kept.push(base + i);
      rows.push(plainRow(base + i, JSON.stringify({ tenant_id: 'acme', n: i, email })));
    }
    await writeSegment(store, { segment: `a31_lost_${s}`, table: 'event_journal', rows, expectedRows: rows.length });
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
  const ids = [`a31-lost-A-${uniqueSuffix()}`, `a31-lost-B-${uniqueSuffix()}`];
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
  await h.pool.query('SELECT pg_terminate_backend($1)', [holder]);
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
  worker.kill('SIGTERM');
  await Promise.race([exited(worker), new Promise((res) => setTimeout(res, 15_000))]);
  worker.kill('SIGKILL');

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

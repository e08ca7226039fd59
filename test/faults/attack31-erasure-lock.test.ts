import type { ChildProcess } from 'node:child_process';
import { listSegments, readSegment, writeSegment, type ArchiveRow } from '../../archive';
import { advisoryKey, type Pool } from '../../shared/db';
import { plainRow } from '../support/archive';
import { findValue, storeEmailSubject } from '../support/erasure';
import { exited, terminate } from '../support/ingest-process';
import { createS3World, type S3World } from '../support/s3-world';
import { s3WorkerProcesses, type WorkerProcesses } from '../support/worker-process';
import { uniqueSuffix } from '../support/env';

// Two erasures of the archive at once, the first one's hold on the archive pass's session lock lost in two ways. Each
// test has a world of its own: both seed the same row ids.
jest.setTimeout(240_000);

const SEGMENTS = 3;
const ROWS = 40_000;

type World = S3World & { queue: string; workers: WorkerProcesses };

/** A database, a bucket, a task queue and its workers for the tests of the enclosing describe. */
function world(label: string, queue: string): World {
  const w = { queue } as World;
  beforeAll(async () => {
    Object.assign(w, await createS3World(label));
    w.workers = s3WorkerProcesses(w.h, queue, w.bucket.config, { SHUTDOWN_TIMEOUT: '10s' });
  }, 120_000);
  afterAll(async () => {
    await w.workers?.close();
    await w.close?.();
  });
  return w;
}

/** The backend holding the erasure archive pass's advisory lock, once one does (up to 30 s). */
async function lockHolder(pool: Pool): Promise<number | undefined> {
  const key = advisoryKey('erasure-archive-pass');
  const classid = Number((BigInt.asUintN(64, key) >> 32n) & 0xffffffffn);
  const objid = Number(BigInt.asUintN(64, key) & 0xffffffffn);
  let holder: number | undefined;
  for (let i = 0; i < 600 && holder === undefined; i++) {
    const { rows } = await pool.query<{ pid: number }>(
      `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = $1 AND objid = $2`,
      [classid, objid],
    );
    holder = rows[0]?.pid;
    if (holder === undefined) await new Promise((r) => setTimeout(r, 50));
  }
  return holder;
}

/**
 * SEGMENTS segments of ROWS rows, subject A in every 7th row and B in every 11th; erasure A is started, and once it
 * holds the lock `disturb` takes it from it (returning the worker that runs on); then erasure B. What the test checks:
 * whether each completed, subject rows still in force, where the subjects are still found, kept rows missing or twice.
 */
async function twoErasures(
  w: World,
  tag: string,
  disturb: (worker: ChildProcess, holder: number) => Promise<ChildProcess>,
) {
  const { h, store, client, queue } = w;
  const valueA = `a31-${tag}-A-${uniqueSuffix()}@example.com`;
  const valueB = `a31-${tag}-B-${uniqueSuffix()}@example.com`;
  const kept: number[] = [];
  for (let s = 0; s < SEGMENTS; s++) {
    const rows: ArchiveRow[] = [];
    const base = 7_000_000 + s * 100_000;
    for (let i = 1; i <= ROWS; i++) {
      const email = i % 7 === 0 ? valueA : i % 11 === 0 ? valueB : `k${i}@example.com`;
      if (email.startsWith('k')) kept.push(base + i);
      rows.push(plainRow(base + i, JSON.stringify({ tenant_id: 'acme', n: i, email })));
    }
    await writeSegment(store, { segment: `a31_${tag}_${s}`, table: 'event_journal', rows, expectedRows: rows.length });
  }
  const hashes: string[] = [];
  for (const value of [valueA, valueB]) hashes.push(await storeEmailSubject(h.pool, value));
  const first = await w.workers.start();
  const ids = [`a31-${tag}-A-${uniqueSuffix()}`, `a31-${tag}-B-${uniqueSuffix()}`];
  await client.workflow.start('erasureWorkflow', {
    taskQueue: queue,
    workflowId: ids[0],
    args: [{ subjectHash: hashes[0], requestedBy: 'attack31' }],
  });
  const holder = await lockHolder(h.pool);
  expect(holder).toBeDefined();
  const worker = await disturb(first, holder!);
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
  await terminate(worker, 15_000);
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
  return {
    results: results.map((r) => !r.startsWith('failed') && !r.startsWith('not finished')),
    subjectRows: subjectRows.length,
    found,
    missing: missing.length,
    twice: twice.length,
  };
}

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
describe('lock connection lost', () => {
  const w = world('a31erlost', `a31-erase-lost-${uniqueSuffix()}`);

  it('the lock connection of an erasure pass is cut, a second erasure runs: no subject left, every other row once', async () => {
    const outcome = await twoErasures(w, 'lost', async (worker, holder) => {
      // What idle_session_timeout (or a cut connection) does to the idle session holding the lock.
      await w.h.pool.query('SELECT pg_terminate_backend($1)', [holder]);
      return worker;
    });
    expect(outcome).toEqual({ results: [true, true], subjectRows: 0, found: [], missing: 0, twice: 0 });
  });
});

/**
 * attack31 (fix c174e01; HELD, kept as a regression): the worker running erasure A's archive pass is SIGKILLed 1.5 s
 * after A took the pass's session lock; erasure B is started and a new worker comes up. The lock goes with the dead
 * connection; A's activity is retried after its heartbeat timeout.
 * Invariants: both complete; no archive file holds A's or B's subject; every other row in the archive exactly once.
 * Observed (1 run): both completed (A archive_rows 17142, B 9351), each segment at generation 3, no subject row,
 * none missing or twice; 81 s (the 1 min heartbeat timeout).
 */
describe('worker killed', () => {
  const w = world('a31erkill', `a31-erase-kill-${uniqueSuffix()}`);

  it('worker SIGKILLed mid-pass holding the lock, new worker, second erasure: no subject left, every other row once', async () => {
    const outcome = await twoErasures(w, 'kill', async (worker) => {
      await new Promise((r) => setTimeout(r, 1500));
      worker.kill('SIGKILL');
      await exited(worker);
      return w.workers.start();
    });
    expect(outcome).toEqual({ results: [true, true], subjectRows: 0, found: [], missing: 0, twice: 0 });
  });
});

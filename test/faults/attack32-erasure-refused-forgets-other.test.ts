import type { ChildProcess } from 'node:child_process';
import { Client as PgClient } from 'pg';
import { curlJson } from '../support/curl';
import { uniqueSuffix } from '../support/env';
import { emailSubjectHash, subjectStored } from '../support/erasure';
import { exited, untilPrinted } from '../support/ingest-process';
import { createProcessWorld, type ProcessWorld } from '../support/process-world';
import { localArchiveEnv } from '../support/sink';

/**
 * attack32 (fix 131a9c6, "a refused/failed POST /erasure start deletes the subject it stored").
 *
 * Invariant (docs/integrity.md, Shutdown; README): a client told 503 (or any 4xx) caused nothing: no workflow, no row
 * changed, no stored subject. And an erasure accepted with 202 runs.
 *
 * Attack: erasure subjects are stored under the subject's hash, one row per subject (storeErasureSubject upserts). A
 * refused request forgets the row (forgetErasureSubject(pool, hash, '')), guarded only by "no *running* lifecycle_audit
 * row for this hash". An erasure A whose workflow has started but whose audit row is not written yet (the API writes
 * it after the start, and skips it at a stop: reply.unlessClosing; the workflow writes it in its first activity, which
 * may not have run) is invisible to that guard. A second POST /erasure for the same subject that is refused deletes
 * A's subject; A's workflow then fails non-retryably ("The subject of erasure ... is no longer stored"), its client
 * having been told 202 accepted.
 *  - case 1 (no stop): A's audit INSERT slowed by a lock on lifecycle_audit (SHARE ROW EXCLUSIVE, SELECT still
 *    allowed), B with an Idempotency-Key of 201 characters (400 from startForRequest, after the subject was stored).
 *  - case 2 (SIGTERM): A's audit INSERT slowed the same way (A then answers 202 without it: unlessClosing); B's
 *    subject upsert held by a row lock until just after the close's grace, so startForRequest answers 503 "not
 *    started" and the route forgets the subject.
 * Then a worker is started on the task queue and A's workflow is awaited.
 *
 * Observed (2 runs each): case 1: A 202, B 400, subject row gone, A's workflow failed "The subject of erasure
 * erasure-... is no longer stored (its erasure ended): request the erasure again". case 2: A 202, B 503 "The API is
 * stopping: the workflow was not started; send it again", subject row gone, A's workflow failed the same way.
 * Suspected cause: api/routes/erasure.ts (the .catch around startForRequest calling forgetErasureSubject) with
 * repository/erasure.ts forgetErasureSubject, whose guard only sees erasures whose audit row is written; the subject
 * row is shared by every request for the same subject.
 *
 * Fixed: the subject is claimed per workflow (sql/017_erasure_claims.sql): a refused request releases only its own
 * claim, a request answered with an erasure that has already ended releases its claim at once, and a subject goes
 * once no claim names it (repository/erasure.ts forgetErasureSubject, api/erasure-claims.ts).
 */
jest.setTimeout(240_000);

let w: ProcessWorld;
const queue = `a32-erforget-${uniqueSuffix()}`;

beforeAll(async () => {
  w = await createProcessWorld('a32erforget', queue, { SHUTDOWN_TIMEOUT: '10s' });
}, 120_000);

afterAll(async () => {
  await w?.close();
});

/** An API on the world's queue and local archive, once it listens: its process and port. */
async function startApi(): Promise<{ api: ChildProcess; port: number }> {
  const { child: api, port } = await w.spawnApi(10_000, localArchiveEnv(w.h));
  await untilPrinted(api, 'Server listening at http://');
  return { api, port };
}

function postErasure(port: number, value: string, headers: string[] = []) {
  return curlJson(
    'POST',
    `http://127.0.0.1:${port}/erasure`,
    { subject: { field: 'email', value }, dry_run: false },
    'attack32',
    headers,
  );
}

const statusOf = (out: string) => out.match(/HTTP (\d+)$/)?.[1];
const messageOf = (out: string) => out.match(/"message":"([^"]*)"/)?.[1];

async function waitingOn(table: string, n: number): Promise<void> {
  for (let i = 0; i < 150; i++) {
    const { rows } = await w.h.pool.query<{ n: string }>(
      `SELECT count(*) AS n FROM pg_locks l JOIN pg_stat_activity a USING (pid)
        WHERE NOT l.granted AND a.query LIKE $1 AND a.query NOT LIKE '%pg_locks%'`,
      [`%${table}%`],
    );
    if (Number(rows[0].n) >= n) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing waited on ${table}`);
}

/** A's workflow run to its end by a worker (started here if none is): 'completed' or 'failed: <message>'. */
async function outcome(workflowId: string): Promise<string> {
  return w.client.workflow
    .getHandle(workflowId)
    .result()
    .then(
      () => 'completed',
      (err: Error) => {
        let e: Error = err;
        while (e.cause instanceof Error) e = e.cause;
        return `failed: ${e.message}`;
      },
    );
}

it('case 1: a POST /erasure refused 400 (bad Idempotency-Key) deletes the subject of an accepted erasure of the same subject', async () => {
  const { h } = w;
  const { api, port } = await startApi();
  const value = `a32-forget-1-${uniqueSuffix()}@example.com`;
  const hash = await emailSubjectHash(h.pool, value);
  const locker = new PgClient({ connectionString: h.databaseUrl });
  await locker.connect();
  try {
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE lifecycle_audit IN SHARE ROW EXCLUSIVE MODE');
    const a = postErasure(port, value);
    await waitingOn('lifecycle_audit', 1); // A stored its subject and started its workflow; its audit row waits
    const b = await postErasure(port, value, [`Idempotency-Key: ${'k'.repeat(201)}`]);
    const storedAfterB = await subjectStored(h.pool, hash);
    await locker.query('COMMIT');
    const aAnswer = await a;
    const erasureId = aAnswer.out.match(/"erasure_id":"([^"]+)"/)?.[1] ?? '';
    const worker = w.workers.spawn();
    await untilPrinted(worker, 'Temporal worker started');
    const result = erasureId ? await outcome(erasureId) : 'no erasure id';
    const seen = {
      a: statusOf(aAnswer.out),
      b: statusOf(b.out),
      bMessage: messageOf(b.out),
      storedAfterB,
      result,
    };
    console.log(`case 1: ${JSON.stringify(seen)}`);
    worker.kill('SIGTERM');
    await exited(worker);
    expect({ a: seen.a, b: seen.b, storedAfterB, result }).toEqual({
      a: '202',
      b: '400',
      storedAfterB: true,
      result: 'completed',
    });
  } finally {
    await locker.end().catch(() => undefined);
    api.kill('SIGKILL');
    await exited(api);
  }
});

it('case 2: at SIGTERM a POST /erasure answered 503 "not started" deletes the subject of one answered 202 beside it', async () => {
  const { h } = w;
  const { api, port } = await startApi();
  const value = `a32-forget-2-${uniqueSuffix()}@example.com`;
  const hash = await emailSubjectHash(h.pool, value);
  const auditLock = new PgClient({ connectionString: h.databaseUrl });
  const rowLock = new PgClient({ connectionString: h.databaseUrl });
  await auditLock.connect();
  await rowLock.connect();
  try {
    await auditLock.query('BEGIN');
    await auditLock.query('LOCK TABLE lifecycle_audit IN SHARE ROW EXCLUSIVE MODE');
    const a = postErasure(port, value);
    await waitingOn('lifecycle_audit', 1);
    // B's upsert of the same subject row waits for this row lock.
    await rowLock.query('BEGIN');
    await rowLock.query('SELECT 1 FROM erasure_subjects WHERE subject_hash = $1 FOR UPDATE', [hash]);
    const b = postErasure(port, value);
    await waitingOn('erasure_subjects', 1);
    await new Promise((r) => setTimeout(r, 300));
    const signalled = Date.now();
    api.kill('SIGTERM');
    const aAnswer = await a; // answered at once: unlessClosing gives up on the audit row
    // Past the grace (a quarter of the stop, ~2.4 s), within the last second the close gives.
    await new Promise((r) => setTimeout(r, Math.max(0, 2700 - (Date.now() - signalled))));
    await rowLock.query('COMMIT');
    const bAnswer = await b;
    const storedAfterB = await subjectStored(h.pool, hash);
    await auditLock.query('COMMIT');
    const code = await Promise.race([exited(api), new Promise((r) => setTimeout(() => r('running'), 30_000))]);
    const tookMs = Date.now() - signalled;
    const erasureId = aAnswer.out.match(/"erasure_id":"([^"]+)"/)?.[1] ?? '';
    const worker = w.workers.spawn();
    await untilPrinted(worker, 'Temporal worker started');
    const result = erasureId ? await outcome(erasureId) : 'no erasure id';
    const seen = {
      api: code,
      tookMs,
      a: statusOf(aAnswer.out),
      b: statusOf(bAnswer.out),
      bMessage: messageOf(bAnswer.out),
      storedAfterB,
      result,
    };
    console.log(`case 2: ${JSON.stringify(seen)}`);
    worker.kill('SIGTERM');
    await exited(worker);
    expect(seen.a).toBe('202');
    expect(seen.b).toBe('503');
    expect({ storedAfterB, result }).toEqual({ storedAfterB: true, result: 'completed' });
  } finally {
    await auditLock.end().catch(() => undefined);
    await rowLock.end().catch(() => undefined);
    api.kill('SIGKILL');
    await exited(api);
  }
});

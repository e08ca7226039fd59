import { listSegments, readSegment, type ArchiveRow } from '../../archive';
import { plainRow, writeJournalSegment } from '../support/archive';
import { uniqueSuffix } from '../support/env';
import { archivePassLockHolders, storeEmailSubject } from '../support/erasure';
import { exited, untilPrinted } from '../support/ingest-process';
import { createProcessWorld, type ProcessWorld } from '../support/process-world';
import { resultWithin } from '../support/temporal';

/**
 * attack32 (fixes 41aea9c and 5c92ad3: a pass that lost its lock must not change the archive; held() is asked only
 * before a manifest switch).
 *
 * Invariant: at most one archive pass changes a segment at a time; no pass that lost its lock changes the archive; no
 * kept row is ever lost from it.
 *
 * Attack: a segment holding no row of erasure A's subject is not rewritten by A's pass but *swept*
 * (eraseArchiveRows: sweepSegment(archive, manifest)), deleting every file of the segment but the one the manifest
 * names: the manifest as A listed it when its pass began, and with no held() first. Here: segment S0 small, segment
 * S1 of 20 000 rows each quoting A's value inside a longer text (a candidate to A's quick text test but no match:
 * so A reads it row by row, a Postgres check each, and finds none;
 * any slow read, a big segment or a slow store, does the same) and one row in 10 of B's subject. A's lock connection is
 * terminated as soon as it holds the lock (idle_session_timeout, a network cut); B takes the lock, rewrites S1 to a
 * new generation, switches the manifest and sweeps the old file, while A is still reading that old file; A finds no
 * row of its subject there and sweeps S1 with the manifest it listed: it deletes B's new file.
 *
 * Observed (3 of 3 runs, local store): both erasures "completed" (A: archive_segments 0, archive_rows 0 - it never
 * called held(); B: archive_rows 2000); S1's manifest names B's generation-2 file, and the only object left under S1
 * is manifest.json: reading it fails "No archive object ...g2-<B's tag>.ndjson.gz"; 18000 of 18100 kept rows lost.
 * Unlike attack32-erasure-lock-lost-after-held, no statement of A has to wait: the lock's connection cut and a read
 * slower than the other's rewrite are enough.
 * Suspected cause: activities/erasure.ts eraseArchiveRows (the else branch: sweepSegment with the manifest listed at
 * the pass's start, no held(), no re-read of the manifest) and archive/rewrite-segment.ts sweepSegment (deletes files
 * a newer manifest names).
 *
 * Fixed by 15cf318: a sweep deletes only files up to its manifest's generation, so a sweep with a stale manifest
 * leaves the next holder's new generation (and the conditional switch keeps a stale pass from switching).
 */
jest.setTimeout(240_000);

const ROWS = 20_000;
let w: ProcessWorld;
const queue = `a32-sweep-${uniqueSuffix()}`;

beforeAll(async () => {
  w = await createProcessWorld('a32sweep', queue, { SHUTDOWN_TIMEOUT: '10s' });
}, 120_000);

afterAll(async () => {
  await w?.close();
});

it('a pass that lost its lock sweeps a segment the next holder rewrote meanwhile: the new file is deleted', async () => {
  const { h, client } = w;
  const store = h.archive;
  const suffix = uniqueSuffix();
  const valueA = `a32-sweep-A-${suffix}@example.com`;
  const valueB = `a32-sweep-B-${suffix}@example.com`;
  const base = 50_000_000 + Math.floor(Math.random() * 1_000_000) * 100;
  const kept: number[] = [];
  const tag = suffix.toLowerCase().replace(/[^a-z0-9]/g, '');
  const small: ArchiveRow[] = [];
  for (let i = 1; i <= 100; i++) {
    small.push(plainRow(base + i, JSON.stringify({ tenant_id: 'acme', n: i, email: `s${i}@example.com` })));
    kept.push(base + i);
  }
  await writeJournalSegment(store, `a32_sweep_${tag}_0`, small);
  const rows: ArchiveRow[] = [];
  for (let i = 1; i <= ROWS; i++) {
    const id = base + 1000 + i;
    const email = i % 10 === 0 ? valueB : `k${i}@example.com`;
    if (email !== valueB) kept.push(id);
    rows.push(plainRow(id, JSON.stringify({ tenant_id: 'acme', n: i, email, note: `seen,${valueA},twice` })));
  }
  const segment = `a32_sweep_${tag}_1`;
  await writeJournalSegment(store, segment, rows);
  const hashes: string[] = [];
  for (const value of [valueA, valueB]) hashes.push(await storeEmailSubject(h.pool, value));
  const worker = w.workers.spawn();
  try {
    await untilPrinted(worker, 'Temporal worker started');
    const ids = [`a32-sweep-A-${suffix}`, `a32-sweep-B-${suffix}`];
    await client.workflow.start('erasureWorkflow', {
      taskQueue: queue,
      workflowId: ids[0],
      args: [{ subjectHash: hashes[0], requestedBy: 'attack32' }],
    });
    let holder: number | undefined;
    for (let i = 0; i < 600 && holder === undefined; i++) {
      holder = (await archivePassLockHolders(h.pool))[0];
      if (holder === undefined) await new Promise((res) => setTimeout(res, 20));
    }
    expect(holder).toBeDefined();
    await h.pool.query('SELECT pg_terminate_backend($1)', [holder]);
    await client.workflow.start('erasureWorkflow', {
      taskQueue: queue,
      workflowId: ids[1],
      args: [{ subjectHash: hashes[1], requestedBy: 'attack32' }],
    });
    const [resultA, resultB] = await Promise.all([
      resultWithin(client, ids[0], 150_000),
      resultWithin(client, ids[1], 150_000),
    ]);
    const files: string[] = [];
    for await (const object of store.list('segments/')) if (object.key.includes(segment)) files.push(object.key);
    const seen = new Set<number>();
    let subjectRows = 0;
    const readErrors: string[] = [];
    for (const manifest of await listSegments(store)) {
      if (!manifest.segment.startsWith(`a32_sweep_${tag}`)) continue;
      try {
        for await (const row of readSegment(store, manifest, { verify: false })) {
          seen.add(row.id);
          if (row.payload.includes(`"email": "${valueB}"`) || row.payload.includes(`"email":"${valueB}"`))
            subjectRows++;
        }
      } catch (err) {
        readErrors.push((err as Error).message.slice(0, 160));
      }
    }
    const missing = kept.filter((id) => !seen.has(id)).length;
    const manifest = (await listSegments(store)).find((m) => m.segment === segment);
    console.log(
      `A ${resultA}; B ${resultB}; S1 files ${JSON.stringify(files)}; manifest names ${manifest?.file.key} ` +
        `(generation ${manifest?.generation}); read errors ${JSON.stringify(readErrors)}; B rows in force ` +
        `${subjectRows}; kept rows missing ${missing} of ${kept.length}`,
    );
    expect({
      completed: [resultA, resultB].map((r) => !r.startsWith('failed') && !r.startsWith('not finished')),
      readErrors,
      subjectRows,
      missing,
    }).toEqual({ completed: [true, true], readErrors: [], subjectRows: 0, missing: 0 });
  } finally {
    worker.kill('SIGTERM');
    await Promise.race([exited(worker), new Promise((res) => setTimeout(res, 15_000))]);
    worker.kill('SIGKILL');
  }
});

import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { deleteSegment } from '../../archive/delete-segment';
import { createLocalStore } from '../../archive/local-store';
import { rewriteSegment } from '../../archive/rewrite-segment';
import type { ArchiveRow } from '../../archive/row';
import type { ArchiveStore } from '../../archive/store';
import { writeSegment } from '../../archive/write-segment';
import { plainRow, readObject, strayObjects } from '../support/archive';

/**
 * attack34 against fd242d2 (archive/rewrite-segment.ts: a switch failing otherwise than ArchiveObjectChangedError
 * "may have switched after all: the file stays", left to a later sweep).
 *
 * Invariants: a refused rewrite's file does not linger for ever; no erased row comes back (no file of the archive
 * holds a row an erasure completed on).
 *
 * Attack: an erasure pass rewrites a segment; while it reads, the segment is withdrawn (maintenance
 * withdrawStaleSegments / archiveRetentionStep: deleteSegment; the rewrite's new file is still a dot-named temp file
 * that deleteSegment's listing skips). The switch then fails with a transient store error (an S3 503 or a timeout):
 * the rewrite keeps its file, "left to a later sweep". No sweep ever comes: sweeps run only for segments with a
 * manifest, and the pass's retry no longer finds the segment. The file, holding every kept row (rows of other
 * subjects), stays in the store for good, outside every later erasure's archive pass: a later erasure of one of those
 * subjects completes with the subject's row still in it.
 * Observed on main: strayObjects ['segments/<seg>/<seg>.g2-<tag>.ndjson.gz'] holding "subject-b@example.com".
 * Fixed: a switch that fails reads the manifest in force; when the segment is gone or its manifest is no longer the
 * one the switch compared, the switch can never land and the rewrite deletes its file.
 */
jest.setTimeout(30_000);

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'attack34-orphan-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

it('a rewrite whose switch failed leaves no file of a segment withdrawn meanwhile', async () => {
  const store = createLocalStore(dir);
  const rows: ArchiveRow[] = Array.from({ length: 10 }, (_, i) =>
    plainRow(i + 1, JSON.stringify({ email: i === 0 ? 'subject-a@example.com' : 'subject-b@example.com' })),
  );
  const segment = `seg_a34orphan_${Date.now().toString(36)}`;
  await writeSegment(store, { segment, table: 'event_journal', rows, expectedRows: rows.length });

  // The switch request fails with a transient error (no answer from the store).
  const flaky: ArchiveStore = {
    ...store,
    list: (prefix, options) => store.list(prefix, options),
    readVersioned: (key, max, options) => store.readVersioned(key, max, options),
    replaceIfVersion: async () => {
      throw Object.assign(new Error('Service Unavailable'), {
        name: 'ServiceUnavailable',
        $metadata: { httpStatusCode: 503 },
      });
    },
  };
  let withdrawn = false;
  const rewrite = await rewriteSegment(flaky, segment, async (row) => {
    if (!withdrawn) {
      withdrawn = true;
      await deleteSegment(store, segment); // the segment is withdrawn while the pass reads it
    }
    return row.payload.includes('subject-a') ? 'drop' : 'keep';
  }).then(
    () => 'switched',
    (err: Error) => err.name,
  );
  expect(rewrite).toBe('ServiceUnavailable');
  // The pass's retry: the segment has no manifest any more, nothing to rewrite or sweep.
  const retried = await rewriteSegment(store, segment, () => 'keep').then(
    () => 'ran',
    (err: Error) => err.name,
  );

  const stray = await strayObjects(store, `segments/${segment}/`);
  const strayHolds = await Promise.all(
    stray.map(async (key) =>
      gunzipSync(await readObject(store, key))
        .toString('utf8')
        .includes('subject-b@example.com'),
    ),
  );
  expect({ retried, stray, strayHolds }).toEqual({ retried: 'SegmentNotFoundError', stray: [], strayHolds: [] });
});

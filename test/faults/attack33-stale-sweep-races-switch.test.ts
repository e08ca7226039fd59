import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createLocalStore } from '../../archive/local-store';
import { readManifest } from '../../archive/manifest';
import { readSegment } from '../../archive/read-segment';
import { rewriteSegment, sweepSegment } from '../../archive/rewrite-segment';
import type { ArchiveRow } from '../../archive/row';
import type { ArchiveStore } from '../../archive/store';
import { writeSegment } from '../../archive/write-segment';
import { collect, plainRow } from '../support/archive';

/**
 * attack33 (9f5342a: "a sweep never deletes the file of the manifest in force"; "a sweep working from an older one (a
 * pass that lost its turn) never deletes the file it names, whatever its generation (a segment archived again starts
 * over at 1)").
 *
 * Invariant: no kept row of an archived segment is ever lost.
 *
 * Attack: the manifest in force is read once, after the listing, and the deletes follow. A late sweep working from a
 * generation-3 manifest of the segment's earlier archiving lists the segment archived again (g1, and the g2 file a
 * rewrite has written and is about to switch to: both "up to generation 3"), reads the manifest in force (g1), and
 * keeps only g1. The rewrite switches to its g2 file and sweeps g1; then the late sweep deletes g2: the manifest names
 * a file that is gone, every row of the segment is lost.
 * Observed: deletedByLateSweep ["...g2-da606e55..."], the manifest naming that file; reading: ArchiveObjectNotFoundError.
 * Fixed: generations count within one archiving (one created_at): a sweep whose manifest is of another archiving than
 * the one in force, or that finds none in force, deletes nothing.
 */
jest.setTimeout(30_000);

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'attack33-sweep-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

it('a late sweep of an earlier archiving never deletes the file a rewrite has just switched to', async () => {
  const store = createLocalStore(dir);
  const rows: ArchiveRow[] = Array.from({ length: 10 }, (_, i) =>
    plainRow(i + 1, JSON.stringify({ who: i === 0 ? 'erased' : `kept-${i}` })),
  );
  const segment = `seg_a33sweep_${Date.now().toString(36)}`;
  // Archived again after an earlier archiving of the same segment reached generation 3.
  const archived = await writeSegment(store, { segment, table: 'event_journal', rows, expectedRows: rows.length });
  const earlier = {
    ...archived,
    created_at: new Date(Date.parse(archived.created_at) - 3_600_000).toISOString(),
    generation: 3,
    file: { ...archived.file, key: `segments/${segment}/${segment}.g3-0badc0de.ndjson.gz` },
  };

  // The late sweep's deletes wait until the rewrite has switched.
  let switched!: () => void;
  const rewriteSwitched = new Promise<void>((resolve) => (switched = resolve));
  const lateStore: ArchiveStore = {
    ...store,
    list: (prefix, options) => store.list(prefix, options),
    readVersioned: (key, max, options) => store.readVersioned(key, max, options),
    delete: async (key, options) => {
      await rewriteSwitched;
      return store.delete(key, options);
    },
  };
  let sweeping: Promise<string[]> | undefined;
  const rewrite = rewriteSegment(store, segment, (row) => (row.payload.includes('erased') ? 'drop' : 'keep'), {
    // The rewrite's g2 file is written and verified; the late sweep lists and reads the manifest in force now.
    beforeSwitch: async () => {
      sweeping = sweepSegment(lateStore, earlier);
      await new Promise((resolve) => setTimeout(resolve, 200));
    },
  });
  const result = await rewrite;
  switched();
  const deleted = await sweeping!;
  const inForce = await readManifest(store, segment);
  const read = await collect(readSegment(store, segment)).then(
    (got) => `${got.length} rows`,
    (err: Error) => `${err.name}`,
  );
  expect({ inForce: inForce.file.key, deletedByLateSweep: deleted, read }).toEqual({
    inForce: result.manifest.file.key,
    deletedByLateSweep: expect.not.arrayContaining([result.manifest.file.key]),
    read: '9 rows',
  });
});

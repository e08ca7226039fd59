import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { deleteSegment } from '../../archive/delete-segment';
import { createLocalStore } from '../../archive/local-store';
import { readManifest } from '../../archive/manifest';
import { readSegment } from '../../archive/read-segment';
import { rewriteSegment } from '../../archive/rewrite-segment';
import type { ArchiveRow } from '../../archive/row';
import type { ArchiveStore } from '../../archive/store';
import { writeSegment } from '../../archive/write-segment';
import { collect, plainRow } from '../support/archive';

/**
 * attack34 against fd242d2 (archive/rewrite-segment.ts sweepSegment: "deletes nothing unless the manifest in force has
 * the same created_at as the sweep's manifest").
 *
 * Invariant: no kept row of an archived segment is ever lost.
 *
 * Attack: the created_at check is made once, before the deletes, and nothing ties the deletes to it. A rewrite (gen 2)
 * switches and sweeps: it lists the archiving's g1 file (`<segment>.g1.ndjson.gz`, a key with no tag), reads the
 * manifest in force (its own: same created_at) and deletes. Between that read and the delete of g1 the segment is
 * deleted and archived again (maintenance archiveRetentionStep: deleteSegment, writeSegment; a pass that lost its
 * turn may still be sweeping after its erasure completed). The new archiving's only file has the same untagged key
 * g1, so the sweep deletes it.
 * Observed on main: the sweep returns the g1 key; the re-archived manifest (another created_at) names
 * `<segment>.g1.ndjson.gz`, which is gone: reading the segment fails with ArchiveObjectNotFoundError (10 rows lost).
 * Fixed: an archiving writes its file under a key of its own (a random tag, as a rewrite's), so a later archiving
 * never writes a key an earlier one's sweep listed.
 */
jest.setTimeout(30_000);

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'attack34-sweep-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

it("a rewrite's sweep never deletes the file of the segment's next archiving", async () => {
  const store = createLocalStore(dir);
  const rows: ArchiveRow[] = Array.from({ length: 10 }, (_, i) =>
    plainRow(i + 1, JSON.stringify({ who: i === 0 ? 'erased' : `kept-${i}` })),
  );
  const segment = `seg_a34sweep_${Date.now().toString(36)}`;
  // The first archiving's file (untagged before the fix: the key a later archiving wrote again).
  const g1 = (await writeSegment(store, { segment, table: 'event_journal', rows, expectedRows: rows.length })).file.key;

  // The rewrite's delete of g1 (its sweep, after the created_at check) is slow: the segment is archived again meanwhile.
  let rearchived: Promise<void> | undefined;
  const slowStore: ArchiveStore = {
    ...store,
    list: (prefix, options) => store.list(prefix, options),
    readVersioned: (key, max, options) => store.readVersioned(key, max, options),
    replaceIfVersion: (key, body, version, options) => store.replaceIfVersion(key, body, version, options),
    delete: async (key, options) => {
      if (key === g1) {
        rearchived ??= (async () => {
          await new Promise((resolve) => setTimeout(resolve, 1_100)); // another created_at, for certain
          await deleteSegment(store, segment);
          await writeSegment(store, { segment, table: 'event_journal', rows, expectedRows: rows.length });
        })();
        await rearchived;
      }
      return store.delete(key, options);
    },
  };
  const result = await rewriteSegment(slowStore, segment, (row) => (row.payload.includes('erased') ? 'drop' : 'keep'));
  const inForce = await readManifest(store, segment);
  const read = await collect(readSegment(store, segment)).then(
    (got) => `${got.length} rows`,
    (err: Error) => err.name,
  );
  expect({
    rearchivedFile: inForce.file.key,
    newArchiving: inForce.created_at !== result.manifest.created_at,
    sweptByRewrite: result.deleted,
    read,
  }).toEqual({
    rearchivedFile: expect.not.stringMatching(`^${g1}$`),
    newArchiving: true,
    sweptByRewrite: [g1],
    read: '10 rows',
  });
});

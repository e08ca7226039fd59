import { gunzipSync } from 'node:zlib';
import { deleteSegment, type ArchiveRow, type ArchiveStore } from '../../archive';
import { createErasureActivities } from '../../activities/erasure';
import { listPendingArchiveWrites } from '../../repository/archive-pending-writes';
import { plainRow, readObject, strayObjects, writeJournalSegment } from '../support/archive';
import { uniqueSuffix } from '../support/env';
import { storeEmailSubject } from '../support/erasure';
import { erasureStoresWorld, s3Unavailable } from '../support/erasure-stores';
import { activityDeps, inActivity } from '../support/temporal';

/**
 * Review of 68d8b25 (archive/rewrite-segment.ts: "a switch that fails while its manifest is gone or replaced deletes
 * its file"; attack34-unswitched-file-orphaned covers it when the manifest can still be read).
 *
 * Invariant: every archive object is named by a manifest in force, or is a pending write that a later step deletes;
 * no rewritten file, holding the rows of other subjects, stays in the store outside every later archive pass.
 *
 * Attack: an erasure pass rewrites a segment; the segment is withdrawn while the pass reads it (deleteSegment, before
 * the new file is visible). Then either (a) the store goes down: the manifest switch fails, and so does the re-read of
 * the manifest that decides whether to delete the file (the same store, the same outage), so the rewrite keeps its
 * file, "nothing known"; or (b) the new file's put lands but its answer is lost (or the process dies right after it):
 * nothing runs after the put. The activity fails; its next attempt, the store back, finds no segment to rewrite or
 * sweep, and completes.
 * Observed on main (local store and S3): the next attempt completes and strayObjects lists
 * `segments/<seg>/<seg>.g2-<tag>.ndjson.gz`, holding the kept subject's row, for good.
 * Fixed: the rewrite records its new file's key (and the manifest version its switch compares) in Postgres before
 * writing it (archive_pending_writes), and forgets it once switched; every archive pass first settles the pending
 * writes: one whose switch can no longer land (segment gone, manifest replaced) is deleted.
 */
jest.setTimeout(60_000);

const world = erasureStoresWorld('a34-outage-orphan');

/**
 * The store as the erasure sees it: the segment is withdrawn just before the rewrite's file is put; then, for
 * 'outage', every call fails from the manifest switch on until `restore()`; for 'answer-lost', the put lands and
 * rejects.
 */
function faultyStore(store: ArchiveStore, segment: string, fault: 'outage' | 'answer-lost') {
  let down = false;
  const guard = <A extends unknown[], R>(call: (...args: A) => Promise<R>) => {
    return async (...args: A): Promise<R> => {
      if (down) throw s3Unavailable();
      return call(...args);
    };
  };
  const faulty: ArchiveStore = {
    kind: store.kind,
    location: store.location,
    put: guard(async (key, body, options) => {
      if (!key.startsWith(`segments/${segment}/${segment}.g2-`)) return store.put(key, body, options);
      await deleteSegment(store, segment); // withdrawn while the pass read it: the new file is not there yet
      const stored = await store.put(key, body, options);
      if (fault === 'answer-lost') throw s3Unavailable();
      return stored;
    }),
    get: guard((key, options) => store.get(key, options)),
    stat: guard((key, options) => store.stat(key, options)),
    list: (prefix, options) => {
      if (down) throw s3Unavailable();
      return store.list(prefix, options);
    },
    readVersioned: guard((key, max, options) => store.readVersioned(key, max, options)),
    replaceIfVersion: guard(async (key, body, version, options) => {
      if (fault === 'outage' && key === `segments/${segment}/manifest.json`) {
        down = true;
        throw s3Unavailable();
      }
      return store.replaceIfVersion(key, body, version, options);
    }),
    delete: guard((key, options) => store.delete(key, options)),
    close: async () => {},
  };
  return { faulty, restore: () => (down = false) };
}

describe.each(world.stores)('%s store', (_kind, storeOf) => {
  it.each(['outage', 'answer-lost'] as const)(
    'a rewrite of a segment withdrawn meanwhile leaves no file after the next attempt (%s)',
    async (fault) => {
      const store = storeOf();
      const suffix = uniqueSuffix();
      const erased = `a34-outage-erased-${suffix}@example.com`;
      const kept = `a34-outage-kept-${suffix}@example.com`;
      const segment = `a34_outage_${fault.replace('-', '_')}_${suffix.toLowerCase().replace(/[^a-z0-9]/g, '')}`;
      const base = 70_000_000 + Math.floor(Math.random() * 1_000_000) * 100;
      const rows: ArchiveRow[] = Array.from({ length: 10 }, (_, i) =>
        plainRow(base + i + 1, JSON.stringify({ tenant_id: 'acme', email: i === 0 ? erased : kept })),
      );
      await writeJournalSegment(store, segment, rows);
      const ref = { erasureId: `a34-outage-${suffix}`, subjectHash: await storeEmailSubject(world.h().pool, erased) };
      const { faulty, restore } = faultyStore(store, segment, fault);
      const erasure = createErasureActivities({ ...activityDeps(world.h()), archive: faulty });
      await inActivity(() => erasure.recordErasureStarted(ref));

      const first = await inActivity(() => erasure.eraseArchiveRows(ref)).then(
        () => 'completed',
        (err: Error) => err.name,
      );
      restore();
      // Temporal's next attempt of the activity, once the store answers again.
      const next = await inActivity(() => erasure.eraseArchiveRows(ref)).then(
        () => 'completed',
        (err: Error) => `${err.name}: ${err.message}`,
      );

      const stray = await strayObjects(store, `segments/${segment}/`);
      const holdingKept = [];
      for (const key of stray) {
        if (
          gunzipSync(await readObject(store, key))
            .toString('utf8')
            .includes(kept)
        )
          holdingKept.push(key);
      }
      const pending = (await listPendingArchiveWrites(world.h().pool)).filter((write) => write.segment === segment);
      expect({ first, next, stray, holdingKept, pending }).toEqual({
        first: 'ServiceUnavailable',
        next: 'completed',
        stray: [],
        holdingKept: [],
        pending: [],
      });
    },
  );
});

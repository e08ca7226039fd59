import { type ArchiveRow, type ArchiveStore } from '../../archive';
import { createErasureActivities } from '../../activities/erasure';
import { plainRow, writeJournalSegment } from '../support/archive';
import { uniqueSuffix } from '../support/env';
import { storeEmailSubject } from '../support/erasure';
import { erasureStoresWorld } from '../support/erasure-stores';
import { activityDeps, inActivity } from '../support/temporal';

/**
 * An archiving stopped between its data file and its manifest (a worker killed there; archive/write-segment.ts) leaves
 * a file no manifest names: no reader and no erasure pass (which goes by manifests) looks at it, and it holds every
 * row of its segment, which the journal still has.
 * Invariant: once an erasure's archive pass has run, no object in the store holds the subject's rows: every object is
 * named by a manifest in force (or is a pending write of a rewrite, settled by the next pass).
 * Before (6fcbd40): the erasure completed and the unfinished archiving's file kept the subject's row until a
 * maintenance run archived that segment again (local and S3).
 */
jest.setTimeout(60_000);

const world = erasureStoresWorld('erasure-incomplete');

async function keysUnder(store: ArchiveStore, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const object of store.list(prefix)) keys.push(object.key);
  return keys.sort();
}

describe.each(world.stores)('%s store', (_kind, storeOf) => {
  it("an erasure's archive pass deletes the file of an archiving that never wrote its manifest", async () => {
    const store = storeOf();
    const suffix = uniqueSuffix();
    const erased = `incomplete-erased-${suffix}@example.com`;
    const name = (label: string) => `${label}_${suffix.toLowerCase().replace(/[^a-z0-9]/g, '')}`;
    const [unfinished, finished] = [name('unfinished'), name('finished')];
    const base = 80_000_000 + Math.floor(Math.random() * 1_000_000) * 100;
    const rows = (from: number): ArchiveRow[] =>
      Array.from({ length: 5 }, (_, i) =>
        plainRow(from + i, JSON.stringify({ tenant_id: 'acme', email: i === 0 ? erased : `kept-${i}@example.com` })),
      );
    await writeJournalSegment(store, unfinished, rows(base + 1));
    await writeJournalSegment(store, finished, rows(base + 11));
    // The archiving of `unfinished` stopped before its manifest: only its data file is there.
    await store.delete(`segments/${unfinished}/manifest.json`);
    expect(await keysUnder(store, `segments/${unfinished}/`)).toHaveLength(1);

    const ref = { erasureId: `incomplete-${suffix}`, subjectHash: await storeEmailSubject(world.h().pool, erased) };
    const erasure = createErasureActivities({ ...activityDeps(world.h()), archive: store });
    await inActivity(() => erasure.recordErasureStarted(ref));
    await inActivity(() => erasure.eraseArchiveRows(ref));

    expect(await keysUnder(store, `segments/${unfinished}/`)).toEqual([]);
    // The finished segment was rewritten without the subject's row, its manifest and one file left.
    const left = await keysUnder(store, `segments/${finished}/`);
    expect(left).toHaveLength(2);
    expect(left).toContain(`segments/${finished}/manifest.json`);
  });
});

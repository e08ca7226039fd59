import { gunzipSync } from 'node:zlib';
import { deleteSegment, type ArchiveRow, type ArchiveStore } from '../../archive';
import { createErasureActivities } from '../../activities/erasure';
import { listPendingArchiveWrites } from '../../repository/archive-pending-writes';
import { advisoryKey } from '../../shared/db';
import { plainRow, readObject, strayObjects, writeJournalSegment } from '../support/archive';
import { uniqueSuffix } from '../support/env';
import { storeEmailSubject } from '../support/erasure';
import { erasureStoresWorld, s3Unavailable } from '../support/erasure-stores';
import { activityDeps, inActivity } from '../support/temporal';

/**
 * Attacks 7d12253 (activities/erasure.ts settlePendingWrites at the start of the archive pass; archive/pending-writes.ts
 * settlePendingWrite; archive/rewrite-segment.ts `pending`).
 *
 * Invariant (docs/archive.md "Rewriting"): every archive object in the store is named by a manifest in force, or is a
 * recorded pending write that a later step deletes; a put whose answer was lost (or a process killed after it) leaves
 * a record that a later archive pass settles.
 *
 * Attack: erasure pass P1 rewrites a segment: it records its new file (archive_pending_writes), and its put is slow
 * (a large segment, a slow store). Meanwhile the segment is withdrawn (deleteSegment) and P1's lock session ends
 * (pg_terminate_backend: Postgres restarted / connection reset; withSessionLock does not stop fn). Erasure pass P2 of
 * another erasure takes the lock and, first thing, settles the pending writes: P1's segment is gone, so it "deletes"
 * P1's file (not there yet: the put is still in flight), and forgets the record. Then P1's put lands and its answer
 * is lost (or P1's process dies right after it), exactly the case 7d12253 says the record covers. P1's next attempt
 * settles nothing (no record) and finds no segment.
 *
 * Observed (local store and S3): both attempts complete, archive_pending_writes has no row for the segment, and
 * strayObjects lists `segments/<seg>/<seg>.g2-<tag>.ndjson.gz`, holding the kept subject's rows, for good: the
 * settle deleted a file a live rewrite was still writing, forgot it, and the file appeared afterwards.
 * Fixed by 1882e34 (the same session, before this test came in): every erasure archive pass deletes the objects of
 * segments without a manifest, so P1's retry deletes the file that landed in the withdrawn segment.
 */
jest.setTimeout(90_000);

const world = erasureStoresWorld('a35-settle-race');

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

describe.each(world.stores)('%s store', (_kind, storeOf) => {
  it("a pass's settle racing a live rewrite's put leaves no unrecorded file", async () => {
    const store = storeOf();
    const suffix = uniqueSuffix();
    const erased = `a35-settle-erased-${suffix}@example.com`;
    const other = `a35-settle-other-${suffix}@example.com`;
    const kept = `a35-settle-kept-${suffix}@example.com`;
    const segment = `a35_settle_${suffix.toLowerCase().replace(/[^a-z0-9]/g, '')}`;
    const base = 71_000_000 + Math.floor(Math.random() * 1_000_000) * 100;
    const rows: ArchiveRow[] = Array.from({ length: 10 }, (_, i) =>
      plainRow(base + i + 1, JSON.stringify({ tenant_id: 'acme', email: i === 0 ? erased : kept })),
    );
    await writeJournalSegment(store, segment, rows);

    const putStarted = deferred();
    const p2Done = deferred();
    let armed = true;
    // P1's store: its new file's put is slow (waits for P2), the segment withdrawn meanwhile; the put lands, its
    // answer is lost.
    const slow: ArchiveStore = {
      ...store,
      kind: store.kind,
      location: store.location,
      put: async (key, body, options) => {
        if (!armed || !key.startsWith(`segments/${segment}/${segment}.g2-`)) return store.put(key, body, options);
        armed = false;
        await deleteSegment(store, segment);
        putStarted.resolve();
        await p2Done.promise;
        await store.put(key, body, options);
        throw s3Unavailable();
      },
      close: async () => {},
    };

    const ref1 = { erasureId: `a35-settle-1-${suffix}`, subjectHash: await storeEmailSubject(world.h().pool, erased) };
    const ref2 = { erasureId: `a35-settle-2-${suffix}`, subjectHash: await storeEmailSubject(world.h().pool, other) };
    const p1 = createErasureActivities({ ...activityDeps(world.h()), archive: slow });
    const p2 = createErasureActivities({ ...activityDeps(world.h()), archive: store });
    await inActivity(() => p1.recordErasureStarted(ref1));
    await inActivity(() => p2.recordErasureStarted(ref2));

    const first = inActivity(() => p1.eraseArchiveRows(ref1)).then(
      () => 'completed',
      (err: Error) => err.name,
    );
    await putStarted.promise;
    // P1's lock session ends (a connection reset); its rewrite goes on.
    const key = advisoryKey('erasure-archive-pass');
    await world.h().pool.query(
      `SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1
         AND classid::bigint = ($1::bigint >> 32) & 4294967295 AND objid::bigint = $1::bigint & 4294967295`,
      [key.toString()],
    );
    const second = await inActivity(() => p2.eraseArchiveRows(ref2)).then(
      () => 'completed',
      (err: Error) => `${err.name}: ${err.message}`,
    );
    p2Done.resolve();
    const firstResult = await first;
    // Temporal's next attempt of P1's activity.
    const retry = await inActivity(() => p1.eraseArchiveRows(ref1)).then(
      () => 'completed',
      (err: Error) => `${err.name}: ${err.message}`,
    );

    const stray = await strayObjects(store, `segments/${segment}/`);
    const holdingKept = [];
    for (const k of stray) {
      if (
        gunzipSync(await readObject(store, k))
          .toString('utf8')
          .includes(kept)
      )
        holdingKept.push(k);
    }
    const pending = (await listPendingArchiveWrites(world.h().pool)).filter((write) => write.segment === segment);
    // Either no file is left, or it is still recorded for a later pass to delete.
    expect({ second, firstResult, retry, unrecorded: stray.filter((k) => !pending.some((p) => p.key === k)) }).toEqual({
      second: 'completed',
      firstResult: 'ServiceUnavailable',
      retry: 'completed',
      unrecorded: [],
    });
    expect(holdingKept.filter((k) => !pending.some((p) => p.key === k))).toEqual([]);
  });
});

import { SegmentNotFoundError } from './errors';
import { readManifestVersion } from './manifest';
import type { ArchiveStore } from './store';

/**
 * A rewrite's new file that no manifest names yet: its key, its segment, and the version of the manifest its switch
 * compares (switchManifest). Its rewrite records it durably before writing the file and forgets it once settled.
 */
export interface PendingWrite {
  key: string;
  segment: string;
  version: string;
}

/** Where a caller keeps its pending writes, out of the store (the erasure: Postgres, archive_pending_writes). */
export interface PendingWriteLog {
  /** Before the file is written: a rewrite that cannot record it writes nothing. */
  record(write: PendingWrite): Promise<void>;
  /** Once settled (the manifest names the file, or it is deleted); a failure leaves it to settlePendingWrite. */
  forget(write: PendingWrite): Promise<void>;
}

/**
 * Settles a pending write that its rewrite may have left (its switch failed with the manifest unreadable, its put's
 * answer was lost, its process was killed): 'switched' when the manifest in force names the file (later rewrites'
 * sweeps delete it once replaced); 'deleted' when its switch can no longer land (the segment gone, or its manifest no
 * longer at the compared version: the switch is conditional, and no version comes back), the file deleted;
 * 'pending' while the manifest is still at that version (a switch may land yet; the file holds no row the file in
 * force does not, and the segment's next change settles it). A store that does not answer rejects: nothing is known.
 */
export async function settlePendingWrite(
  store: ArchiveStore,
  write: PendingWrite,
): Promise<'switched' | 'deleted' | 'pending'> {
  const now = await readManifestVersion(store, write.segment).catch((err: unknown) => {
    if (err instanceof SegmentNotFoundError) return undefined;
    throw err;
  });
  if (now?.manifest.file.key === write.key) return 'switched';
  if (now?.version === write.version) return 'pending';
  await store.delete(write.key);
  return 'deleted';
}

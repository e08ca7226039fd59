import { randomUUID } from 'node:crypto';
import { ArchiveConditionalWriteError, ArchiveObjectChangedError } from './errors';
import type { ArchiveStore, StoreCallOptions } from './store';

/** Where the check's object lives, away from segments/ (listed by nothing that reads segments). */
const CHECK_PREFIX = 'checks/';

/**
 * Proves the store refuses a replace at a stale version (what a rewrite's manifest switch relies on): writes an object
 * of its own, replaces it at the version it read, then tries once more at that same, now stale, version. The second
 * replace must be refused; when the store takes it, ArchiveConditionalWriteError. The object is removed either way.
 */
export async function checkConditionalWrites(store: ArchiveStore, options?: StoreCallOptions): Promise<void> {
  const key = `${CHECK_PREFIX}conditional-write-${randomUUID()}`;
  await store.put(key, Buffer.from('first'), options);
  try {
    const read = await store.readVersioned(key, 64, options);
    if (!read) throw new Error(`The archive store ${store.location} lost "${key}" just written`);
    await store.replaceIfVersion(key, Buffer.from('second'), read.version, options);
    const refused = await store.replaceIfVersion(key, Buffer.from('third'), read.version, options).then(
      () => false,
      (err: unknown) => {
        if (err instanceof ArchiveObjectChangedError) return true;
        throw err;
      },
    );
    if (!refused) throw new ArchiveConditionalWriteError(store.location);
  } finally {
    await store.delete(key, options);
  }
}

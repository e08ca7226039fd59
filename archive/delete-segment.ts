import type { ArchiveStore } from './store';
import { assertSegmentName, manifestKey, segmentPrefix } from './manifest';

/**
 * Removes a segment from the store: its manifest first (from then on the segment does not exist for any reader), then
 * every other object under its name; returns the keys deleted. Only for a segment whose rows are all still in the
 * journal (an archiving withdrawn before its removal): the store then holds nothing the journal does not.
 */
export async function deleteSegment(store: ArchiveStore, segment: string): Promise<string[]> {
  assertSegmentName(segment);
  const deleted = [manifestKey(segment)];
  await store.delete(manifestKey(segment));
  for await (const object of store.list(segmentPrefix(segment))) deleted.push(object.key);
  for (const key of deleted.slice(1)) await store.delete(key);
  return deleted;
}

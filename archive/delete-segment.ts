import type { ArchiveStore } from './store';
import { assertSegmentName, manifestKey, segmentPrefix, SEGMENTS } from './manifest';

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

/**
 * Deletes every object of the segments that have no manifest: an archiving stopped between its file and its manifest
 * (a killed worker), or a withdrawal stopped after its manifest went. Such a file is read by nothing and holds rows the
 * journal still has (an archiving's journal rows go only once its manifest is recorded); an erasure deletes them from
 * the journal, so its archive pass deletes these too (an archiving writing at that moment finds the erasure when it
 * checks after its manifest, withdraws the segment and writes it again). Returns the keys deleted.
 */
export async function deleteIncompleteSegments(store: ArchiveStore): Promise<string[]> {
  const bySegment = new Map<string, string[]>();
  for await (const object of store.list(SEGMENTS)) {
    const [segment, ...rest] = object.key.slice(SEGMENTS.length).split('/');
    if (rest.length === 0) continue; // not a segment's object
    bySegment.set(segment, [...(bySegment.get(segment) ?? []), object.key]);
  }
  const deleted: string[] = [];
  for (const [segment, keys] of bySegment) {
    if (keys.includes(manifestKey(segment))) continue;
    for (const key of keys) await store.delete(key);
    deleted.push(...keys);
  }
  return deleted;
}

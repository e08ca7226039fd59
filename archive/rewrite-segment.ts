import { randomBytes } from 'node:crypto';
import { describeFile, putDataFile, verifyWrittenFile } from './data-file';
import { ArchiveObjectChangedError, SegmentNotFoundError } from './errors';
import type { ProgressListener } from './digest';
import type { PendingWrite, PendingWriteLog } from './pending-writes';
import {
  dataKey,
  findManifest,
  manifestKey,
  readManifestVersion,
  segmentPrefix,
  switchManifest,
  type SegmentManifest,
} from './manifest';
import { readSegment } from './read-segment';
import type { ArchiveRow } from './row';
import type { ArchiveStore } from './store';

/** What to do with one row of a segment being rewritten: keep it, drop it, or put another (redacted) row instead. */
export type RowDecision = 'keep' | 'drop' | { replace: ArchiveRow };

/** What a rewrite did. `changed` is false when every row was kept: then no new generation was written. */
export interface RewriteResult {
  segment: string;
  changed: boolean;
  kept: number;
  dropped: number;
  replaced: number;
  /** The manifest now in force. */
  manifest: SegmentManifest;
  /** Files removed from the store: the previous generation, and leftovers of rewrites that died half-way. */
  deleted: string[];
}

/**
 * Rewrites a segment row by row (for erasure): streams the current generation through `decide` into a new file under
 * a new key, verifies it, swaps the manifest to it, then deletes the old file. At every moment the manifest points at
 * a complete, verified file; once this resolves, no file of the segment holds a dropped or replaced row. A rewrite
 * that died half-way is finished by running it again: rows already erased are kept as they are, and every file of an
 * earlier generation is deleted. The swap is conditional on the manifest read at the start: a rewrite overtaken by
 * another (two passes at once, one whose lock was lost) fails with ArchiveObjectChangedError and changes nothing, so
 * what the other erased stays erased; run it again. With `pending`, the new file is recorded there before it is
 * written and forgotten once settled: a rewrite stopped in between (a store outage through its switch and the
 * manifest's re-read, a put whose answer was lost, a killed process) leaves the record, and settlePendingWrite deletes
 * the file once its switch can no longer land. Every object of the segment is then named by its manifest, or is a
 * pending write that a later step deletes.
 */
export async function rewriteSegment(
  store: ArchiveStore,
  segment: string,
  decide: (row: ArchiveRow) => RowDecision | Promise<RowDecision>,
  options: {
    onProgress?: ProgressListener;
    /** Called once the new generation is verified, before the manifest switches to it (not when nothing changed). */
    beforeSwitch?: () => Promise<void>;
    /** Where the new file is recorded before it is written (docs/archive.md, "Rewriting"). */
    pending?: PendingWriteLog;
  } = {},
): Promise<RewriteResult> {
  const { manifest: current, version } = await readManifestVersion(store, segment);
  const counts = { kept: 0, dropped: 0, replaced: 0 };
  async function* rewritten(): AsyncGenerator<ArchiveRow> {
    // verify: a corrupted source fails the rewrite instead of silently losing the rows after the damage.
    for await (const row of readSegment(store, current, { verify: true })) {
      const decision = await decide(row);
      if (decision === 'keep') {
        counts.kept++;
        yield row;
      } else if (decision === 'drop') {
        counts.dropped++;
      } else {
        counts.replaced++;
        yield decision.replace;
      }
    }
  }

  const generation = current.generation + 1;
  // Its own key: a rewrite that lost its turn (its lock's connection cut) and one that has it never share a file.
  const key = dataKey(segment, generation, randomBytes(4).toString('hex'));
  // Recorded before the put: whatever stops the rewrite after it (no answer, no process) leaves a record to settle.
  const pending: PendingWrite = { key, segment, version };
  await options.pending?.record(pending);
  const settled = () => options.pending?.forget(pending).catch(() => undefined); // a record left is settled later
  const written = await putDataFile(store, key, segment, rewritten(), options.onProgress);
  if (counts.dropped + counts.replaced === 0) {
    await store.delete(key);
    await settled();
    return { segment, changed: false, ...counts, manifest: current, deleted: await sweepSegment(store, current) };
  }
  const manifest: SegmentManifest = {
    ...current,
    ...describeFile(key, written),
    generation,
    rewrite: { at: new Date().toISOString(), ...counts },
  };
  try {
    await verifyWrittenFile(store, key, segment, written, counts.kept + counts.replaced, options.onProgress);
    await options.beforeSwitch?.();
  } catch (err) {
    await dropUnswitched(store, key);
    throw err;
  }
  await switchManifest(store, manifest, version).catch(async (err: unknown) => {
    const now = await readManifestVersion(store, segment).then(
      (read) => read,
      (readErr: unknown) => (readErr instanceof SegmentNotFoundError ? undefined : 'unknown'),
    );
    // Nothing known: the file stays, pending (settlePendingWrite, or a later sweep of the segment, decides).
    if (now === 'unknown') throw err;
    // A switch whose answer was lost is sent again by the client and refused by its own success: the manifest then
    // names this very file (its key is this rewrite's alone), and the rewrite has switched.
    if (now?.manifest.file.key === key) return;
    // This switch can no longer land (refused; or the manifest it compared is replaced, or gone with its segment, which
    // no sweep will visit again): its file, made from a generation since replaced, goes now. A switch that failed
    // otherwise while the manifest is still the one it compared may land yet: its file stays for the segment's sweep.
    if (err instanceof ArchiveObjectChangedError || now?.version !== version) await dropUnswitched(store, key);
    throw err;
  });
  await settled();
  return { segment, changed: true, ...counts, manifest, deleted: await sweepSegment(store, manifest) };
}

/** Deletes a rewrite's file that no manifest will name; a failure to is left to a later sweep. */
async function dropUnswitched(store: ArchiveStore, key: string): Promise<void> {
  await store.delete(key).catch(() => undefined);
}

/**
 * Deletes every object of the segment but its manifest and the file the manifest points at, up to the manifest's
 * generation (older generations, leftovers of a rewrite or an archiving that died half-way); returns their keys. Files
 * of a later generation are left: another rewrite may be about to switch to one (a manifest read a moment ago may no
 * longer be the one in force), and none of an earlier generation can come back (the switch is conditional).
 */
export async function sweepSegment(store: ArchiveStore, manifest: SegmentManifest): Promise<string[]> {
  const keep = new Set([manifestKey(manifest.segment), manifest.file.key]);
  const stale: string[] = [];
  for await (const object of store.list(segmentPrefix(manifest.segment))) {
    const generation = generationOf(manifest.segment, object.key);
    if (!keep.has(object.key) && !(generation !== undefined && generation > manifest.generation)) {
      stale.push(object.key);
    }
  }
  // The manifest in force now, read after the listing. Generations count within one archiving of the segment (one
  // created_at; a segment archived again starts over at 1): a sweep whose manifest is of another archiving, or that
  // finds none in force (deleted, or an archiving about to write it), deletes nothing, since the files it listed may be
  // that archiving's. Within one, it never deletes the file in force (a pass that lost its turn works from an older one).
  const current = await findManifest(store, manifest.segment);
  if (current?.created_at !== manifest.created_at) return [];
  const doomed = stale.filter((key) => key !== current.file.key);
  for (const key of doomed) await store.delete(key);
  return doomed;
}

/** The generation a data file's key names (dataKey), or undefined for a key that is not one. */
function generationOf(segment: string, key: string): number | undefined {
  const name = key.slice(segmentPrefix(segment).length);
  const match = name.startsWith(`${segment}.g`)
    ? /^(\d+)(-[0-9a-f]+)?\.ndjson\.gz$/.exec(name.slice(segment.length + 2))
    : null;
  return match ? Number(match[1]) : undefined;
}

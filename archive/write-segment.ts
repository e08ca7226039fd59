import { randomBytes } from 'node:crypto';
import { describeFile, putDataFile, verifyWrittenFile } from './data-file';
import { compareDigests, digestStoredFile, type ProgressListener } from './digest';
import { ArchiveVerifyError, SegmentExistsError } from './errors';
import {
  assertSegmentName,
  dataKey,
  findManifest,
  readManifest,
  SEGMENT_FORMAT,
  SEGMENT_FORMAT_VERSION,
  writeManifest,
  type SegmentManifest,
} from './manifest';
import type { ArchiveRow } from './row';
import type { ArchiveStore } from './store';

/** A segment to archive: its name, where its rows come from, and how many the source says it holds. */
export interface WriteSegmentInput {
  /** Unique in the store; e.g. the partition's name. */
  segment: string;
  /** The table or partition read. */
  table: string;
  /** The partition's bounds, [from, to); omitted when there are none. */
  bounds?: { from: string; to: string };
  /** In id order by convention (repository/journal-archive.ts reads them so); any order is archived as given. */
  rows: AsyncIterable<ArchiveRow> | Iterable<ArchiveRow>;
  /** The source's own count (count(*) of the partition): the archive must hold exactly that many rows. */
  expectedRows?: number;
  /**
   * When the segment already has a manifest: 'refuse' (default) throws SegmentExistsError; 'verify' checks the archived
   * segment (against expectedRows too) and returns its manifest without reading `rows`, so that a retried activity
   * whose first attempt archived the segment goes on to the drop.
   */
  ifExists?: 'refuse' | 'verify';
  /** Told as the write and the read-back go on (heartbeats). */
  onProgress?: ProgressListener;
}

/**
 * Archives rows as a new segment: streams them into the store as gzip NDJSON, reads the file back and checks its row
 * count and both checksums (and expectedRows), and only then writes the manifest, the mark that the segment exists.
 * A segment that already has a manifest is refused (SegmentExistsError) or verified (ifExists: 'verify'). Each
 * archiving writes a file of its own key (a random tag): a file left by an earlier attempt that died before its
 * manifest stays until the segment is deleted (the maintenance step deletes a segment before archiving it again). Resolves to the manifest; ArchiveVerifyError when the check fails (the file is
 * deleted then, and the caller must not drop the source).
 */
export async function writeSegment(store: ArchiveStore, input: WriteSegmentInput): Promise<SegmentManifest> {
  assertSegmentName(input.segment);
  const existing = await findManifest(store, input.segment);
  if (existing && input.ifExists === 'verify') {
    return verifySegment(store, existing, { expectedRows: input.expectedRows, onProgress: input.onProgress });
  }
  if (existing) throw new SegmentExistsError(input.segment);
  const generation = 1;
  // Its own key, as a rewrite's: a later archiving of the segment never writes a key an earlier one's sweep listed.
  const key = dataKey(input.segment, generation, randomBytes(4).toString('hex'));
  const written = await putDataFile(store, key, input.segment, input.rows, input.onProgress);
  await verifyWrittenFile(store, key, input.segment, written, input.expectedRows, input.onProgress);
  const manifest: SegmentManifest = {
    format: SEGMENT_FORMAT,
    version: SEGMENT_FORMAT_VERSION,
    segment: input.segment,
    table: input.table,
    bounds: input.bounds ?? null,
    ...describeFile(key, written),
    created_at: new Date().toISOString(),
    generation,
  };
  await writeManifest(store, manifest);
  return manifest;
}

/**
 * Re-reads a segment's file from the store and checks it against its manifest: row count, size and sha256 of the
 * compressed file and of the NDJSON; and the row count against expectedRows when given (the source's count, before a
 * drop). Resolves to the manifest; ArchiveVerifyError lists every difference (nothing is deleted).
 */
export async function verifySegment(
  store: ArchiveStore,
  segment: string | SegmentManifest,
  options: { expectedRows?: number; onProgress?: ProgressListener } = {},
): Promise<SegmentManifest> {
  const manifest = typeof segment === 'string' ? await readManifest(store, segment) : segment;
  const stored = await digestStoredFile(store, manifest.file.key, options.onProgress).catch((err: Error) => {
    if (err.name === 'ArchiveObjectNotFoundError') {
      throw new ArchiveVerifyError(manifest.segment, [`its file ${manifest.file.key} is missing`], { cause: err });
    }
    throw err;
  });
  const problems = compareDigests({ ...manifest.file, rows: manifest.rows }, stored);
  if (options.expectedRows !== undefined && manifest.rows !== options.expectedRows) {
    problems.push(`the manifest counts ${manifest.rows} rows, the source has ${options.expectedRows}`);
  }
  if (problems.length > 0) throw new ArchiveVerifyError(manifest.segment, problems);
  return manifest;
}

import { createHash } from 'node:crypto';
import { pipeline } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { ArchiveVerifyError } from './errors';
import { rowMatcher, type RowFilter, type RowPredicate } from './filter';
import { readManifest, type SegmentManifest } from './manifest';
import { decodeRow, type ArchiveRow } from './row';
import { isCorruptGzip, splitLines, tap } from './streams';
import type { ArchiveStore } from './store';

export interface ReadSegmentOptions {
  /** Only rows that match (RowFilter's conditions, or any predicate). Every row is still read and decompressed. */
  filter?: RowFilter | RowPredicate;
  /**
   * Check, once the file is read through, that its row count and compressed sha256 are the manifest's (default true):
   * an ArchiveVerifyError then ends the iteration, after the rows already yielded. Not checked when the caller stops
   * early.
   */
  verify?: boolean;
}

/**
 * The rows of an archived segment, streamed: gunzip and split into lines as the bytes arrive, so memory holds one
 * chunk and one row whatever the segment's size. For cold replay, erasure and restores.
 */
export async function* readSegment(
  store: ArchiveStore,
  segment: string | SegmentManifest,
  options: ReadSegmentOptions = {},
): AsyncGenerator<ArchiveRow> {
  const manifest = typeof segment === 'string' ? await readManifest(store, segment) : segment;
  const matches = rowMatcher(options.filter);
  const hash = createHash('sha256');
  let bytes = 0;
  const source = await store.get(manifest.file.key);
  const rows = pipeline(
    source,
    tap((chunk) => {
      hash.update(chunk);
      bytes += chunk.length;
    }),
    createGunzip(),
    () => {}, // errors surface through the iteration below
  );
  let count = 0;
  try {
    for await (const line of splitLines(rows)) {
      const row = decodeRow(line, manifest.segment, ++count);
      if (matches(row)) yield row;
    }
  } catch (err) {
    if (isCorruptGzip(err)) {
      throw new ArchiveVerifyError(manifest.segment, [`the file does not decompress: ${(err as Error).message}`], {
        cause: err,
      });
    }
    throw err;
  } finally {
    source.destroy();
    rows.destroy();
  }
  if (options.verify === false) return;
  const problems: string[] = [];
  if (count !== manifest.rows) problems.push(`${count} rows read, the manifest counts ${manifest.rows}`);
  const sha256 = hash.digest('hex');
  if (bytes !== manifest.file.bytes || sha256 !== manifest.file.sha256) {
    problems.push(`the file read (${bytes} bytes, sha256 ${sha256}) is not the one the manifest describes`);
  }
  if (problems.length > 0) throw new ArchiveVerifyError(manifest.segment, problems);
}

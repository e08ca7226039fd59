import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { countNewlines, isCorruptGzip, tap } from './streams';
import type { ArchiveStore } from './store';

/** What a segment file holds, as the manifest records it: rows, and size and sha256 before and after compression. */
export interface FileDigest {
  rows: number;
  bytes: number;
  sha256: string;
  ndjson_bytes: number;
  ndjson_sha256: string;
}

/**
 * Told as a long write or read goes on, e.g. to heartbeat a Temporal activity: the phase, and the rows and NDJSON bytes
 * done so far. Called every chunk (about 64 KiB), so a listener throttles what it does.
 */
export type ProgressListener = (progress: { phase: 'write' | 'verify'; rows: number; bytes: number }) => void;

/**
 * Reads a stored segment file through and digests it: counts the rows (lines), hashes the compressed bytes and the
 * NDJSON. A file that does not decompress (truncated, corrupted) is a `problem`, not an exception, so that a verify
 * can report it beside the other differences. A read that fails on its own (aborted, timed out, cut by the store)
 * rejects: it says nothing of the file, which a verify must neither condemn nor delete for it.
 */
export async function digestStoredFile(
  store: ArchiveStore,
  key: string,
  onProgress?: ProgressListener,
): Promise<FileDigest & { problem?: string }> {
  const compressed = createHash('sha256');
  const ndjson = createHash('sha256');
  const digest = { rows: 0, bytes: 0, sha256: '', ndjson_bytes: 0, ndjson_sha256: '' };
  let lastByte: number | undefined;
  let problem: string | undefined;
  try {
    await pipeline(
      await store.get(key),
      tap((chunk) => {
        compressed.update(chunk);
        digest.bytes += chunk.length;
      }),
      createGunzip(),
      new Writable({
        write(chunk: Buffer, _encoding, done) {
          ndjson.update(chunk);
          digest.ndjson_bytes += chunk.length;
          digest.rows += countNewlines(chunk);
          lastByte = chunk[chunk.length - 1];
          onProgress?.({ phase: 'verify', rows: digest.rows, bytes: digest.ndjson_bytes });
          done();
        },
      }),
    );
    if (lastByte !== undefined && lastByte !== 0x0a) problem = 'the last line has no newline (cut short)';
  } catch (err) {
    if (!isCorruptGzip(err)) throw err;
    problem = `the file does not decompress: ${(err as Error).message}`;
  }
  return { ...digest, sha256: compressed.digest('hex'), ndjson_sha256: ndjson.digest('hex'), problem };
}

/** Each way `actual` differs from `expected`, in words. */
export function compareDigests(expected: FileDigest, actual: FileDigest & { problem?: string }): string[] {
  const problems = actual.problem ? [actual.problem] : [];
  for (const field of ['rows', 'bytes', 'sha256', 'ndjson_bytes', 'ndjson_sha256'] as const) {
    if (expected[field] !== actual[field]) {
      problems.push(`${field} is ${actual[field]} in the stored file, ${expected[field]} expected`);
    }
  }
  return problems;
}

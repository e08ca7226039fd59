import { createHash } from 'node:crypto';
import { pipeline, Readable } from 'node:stream';
import { createGzip } from 'node:zlib';
import { compareDigests, digestStoredFile, type FileDigest, type ProgressListener } from './digest';
import { ArchiveFormatError, ArchiveVerifyError } from './errors';
import type { SegmentManifest } from './manifest';
import { badField, encodeRow, type ArchiveRow } from './row';
import { tap } from './streams';
import type { ArchiveStore } from './store';

/** What writing a segment file found out about its rows, for the manifest. */
export interface WrittenFile extends FileDigest {
  id: SegmentManifest['id'];
  received_at: SegmentManifest['received_at'];
}

// NDJSON goes to gzip in chunks of about this many characters rather than line by line.
const CHUNK_CHARS = 64 * 1024;

/**
 * Streams rows as gzip-compressed NDJSON into the store under key, in constant memory (one chunk of lines, gzip's
 * window, the store's upload buffer), and returns the digest of what it sent. An invalid row (a missing column, a
 * wrong type) stops the write: a file that could not be read back must never replace what it archives. A failing row
 * source (the database went away) fails the put, which then stores nothing.
 */
export async function putDataFile(
  store: ArchiveStore,
  key: string,
  segment: string,
  rows: AsyncIterable<ArchiveRow> | Iterable<ArchiveRow>,
  onProgress?: ProgressListener,
): Promise<WrittenFile> {
  const ndjson = createHash('sha256');
  const compressed = createHash('sha256');
  const file: WrittenFile = {
    rows: 0,
    bytes: 0,
    sha256: '',
    ndjson_bytes: 0,
    ndjson_sha256: '',
    id: null,
    received_at: null,
  };
  let sourceError: unknown;

  const emit = (text: string): Buffer => {
    const chunk = Buffer.from(text, 'utf8');
    ndjson.update(chunk);
    file.ndjson_bytes += chunk.length;
    onProgress?.({ phase: 'write', rows: file.rows, bytes: file.ndjson_bytes });
    return chunk;
  };
  async function* lines(): AsyncGenerator<Buffer> {
    let pending = '';
    try {
      for await (const row of rows) {
        const bad = badField(row as unknown as Record<string, unknown>);
        if (bad)
          throw new ArchiveFormatError(segment, `row ${file.rows + 1} (id ${String(row.id)}): bad or missing ${bad}`);
        pending += encodeRow(row);
        note(file, row);
        if (pending.length >= CHUNK_CHARS) {
          yield emit(pending);
          pending = '';
        }
      }
    } catch (err) {
      sourceError = err;
      throw err;
    }
    if (pending) yield emit(pending);
  }

  let piped: (err?: unknown) => void = () => {};
  const done = new Promise<void>((resolve, reject) => (piped = (err) => (err ? reject(err) : resolve())));
  const body = pipeline(
    Readable.from(lines()),
    createGzip(),
    tap((chunk) => {
      compressed.update(chunk);
      file.bytes += chunk.length;
    }),
    (err) => piped(err ?? undefined),
  );
  // A store that gives up stops reading: tear the pipeline down, or it would wait on backpressure for ever.
  const stored = store.put(key, body).catch((err: unknown) => {
    body.destroy();
    throw err;
  });
  const [put, pipe] = await Promise.allSettled([stored, done]);
  // The first cause wins: the row source's own error, then the store's, then the stream's.
  if (sourceError !== undefined) throw sourceError;
  if (put.status === 'rejected') throw put.reason;
  if (pipe.status === 'rejected') throw pipe.reason;
  return { ...file, sha256: compressed.digest('hex'), ndjson_sha256: ndjson.digest('hex') };
}

/** The part of a manifest that describes a file just written: its rows, their ranges, its digests. */
export function describeFile(
  key: string,
  written: WrittenFile,
): Pick<SegmentManifest, 'rows' | 'id' | 'received_at' | 'file'> {
  return {
    rows: written.rows,
    id: written.id,
    received_at: written.received_at,
    file: {
      key,
      compression: 'gzip',
      bytes: written.bytes,
      sha256: written.sha256,
      ndjson_bytes: written.ndjson_bytes,
      ndjson_sha256: written.ndjson_sha256,
    },
  };
}

function note(file: WrittenFile, row: ArchiveRow): void {
  file.rows++;
  if (!file.id) file.id = { min: row.id, max: row.id };
  else if (row.id < file.id.min) file.id.min = row.id;
  else if (row.id > file.id.max) file.id.max = row.id;
  if (!file.received_at) file.received_at = { min: row.received_at, max: row.received_at };
  else if (row.received_at < file.received_at.min) file.received_at.min = row.received_at;
  else if (row.received_at > file.received_at.max) file.received_at.max = row.received_at;
}

/**
 * Reads the file just written back from the store and compares it with what was sent (and with the row count the
 * caller expects, when it gives one); on any difference the file is deleted and ArchiveVerifyError names them all.
 */
export async function verifyWrittenFile(
  store: ArchiveStore,
  key: string,
  segment: string,
  written: FileDigest,
  expectedRows?: number,
  onProgress?: ProgressListener,
): Promise<void> {
  const problems = compareDigests(written, await digestStoredFile(store, key, onProgress));
  if (expectedRows !== undefined && written.rows !== expectedRows) {
    problems.push(`${written.rows} rows written, the source has ${expectedRows}`);
  }
  if (problems.length > 0) {
    await store.delete(key);
    throw new ArchiveVerifyError(segment, problems);
  }
}

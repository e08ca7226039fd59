import { Transform } from 'node:stream';

/** A pass-through that shows each chunk to `see` (to hash or count the bytes going by). */
export function tap(see: (chunk: Buffer) => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      see(chunk);
      done(null, chunk);
    },
  });
}

/** Whether gunzip refused the bytes (zlib's Z_ codes): a truncated or corrupted file, not a store that failed. */
export function isCorruptGzip(err: unknown): boolean {
  return /^Z_/.test(String((err as NodeJS.ErrnoException | undefined)?.code));
}

const NEWLINE = 0x0a;

/** How many '\n' bytes a chunk holds. */
export function countNewlines(chunk: Buffer): number {
  let count = 0;
  for (let at = chunk.indexOf(NEWLINE); at !== -1; at = chunk.indexOf(NEWLINE, at + 1)) count++;
  return count;
}

/**
 * The '\n'-terminated lines of a byte stream, decoded as UTF-8 (without the '\n'). Splits on bytes before decoding,
 * so a character cut between two chunks is whole again; a line longer than a chunk is gathered from several. Holds one
 * line and one chunk at a time. A last line without its '\n' is yielded too (the caller's count tells it was short).
 */
export async function* splitLines(chunks: AsyncIterable<Buffer>): AsyncGenerator<string> {
  let partial: Buffer[] = [];
  for await (const chunk of chunks) {
    let start = 0;
    for (let end = chunk.indexOf(NEWLINE); end !== -1; end = chunk.indexOf(NEWLINE, start)) {
      const piece = chunk.subarray(start, end);
      if (partial.length === 0) {
        yield piece.toString('utf8');
      } else {
        partial.push(piece);
        yield Buffer.concat(partial).toString('utf8');
        partial = [];
      }
      start = end + 1;
    }
    if (start < chunk.length) partial.push(chunk.subarray(start));
  }
  if (partial.length > 0) yield Buffer.concat(partial).toString('utf8');
}

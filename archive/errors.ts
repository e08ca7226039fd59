/** A key that is not a relative, slash-separated path of plain names (no `..`, no empty part, no leading slash). */
export class ArchiveKeyError extends Error {
  override readonly name = 'ArchiveKeyError';
  constructor(readonly key: string) {
    super(`Invalid archive key "${key}": expected parts of letters, digits, '.', '_', '-' separated by '/'`);
  }
}

/** The store has no object under this key. */
export class ArchiveObjectNotFoundError extends Error {
  override readonly name = 'ArchiveObjectNotFoundError';
  constructor(
    readonly key: string,
    readonly location: string,
    options?: { cause?: unknown },
  ) {
    super(`No archive object "${key}" in ${location}`, options);
  }
}

/**
 * A conditional replace found the object changed since it was read: another writer (a rewrite of the same segment
 * that had the turn) got there first. Nothing was written; read it again and start over.
 */
export class ArchiveObjectChangedError extends Error {
  override readonly name = 'ArchiveObjectChangedError';
  constructor(
    readonly key: string,
    readonly location: string,
    options?: { cause?: unknown },
  ) {
    super(`Archive object "${key}" in ${location} changed since it was read: not replaced`, options);
  }
}

/** A segment of that name is already archived; archiving it again would hide which copy is the real one. */
export class SegmentExistsError extends Error {
  override readonly name = 'SegmentExistsError';
  constructor(readonly segment: string) {
    super(`Archive segment "${segment}" already exists`);
  }
}

/** No manifest for this segment: it was never archived, or its archiving did not finish. */
export class SegmentNotFoundError extends Error {
  override readonly name = 'SegmentNotFoundError';
  constructor(readonly segment: string) {
    super(`Archive segment "${segment}" not found (no manifest)`);
  }
}

/**
 * What was read back from the store is not what the manifest (or the caller) says was written: a short or corrupted
 * file, a different row count. `problems` names each difference; nothing that depends on the segment may go on.
 */
export class ArchiveVerifyError extends Error {
  override readonly name = 'ArchiveVerifyError';
  constructor(
    readonly segment: string,
    readonly problems: string[],
    options?: { cause?: unknown },
  ) {
    super(`Archive segment "${segment}" failed verification: ${problems.join('; ')}`, options);
  }
}

/** A segment file or manifest that is not in the format this code reads (bad line, unknown version). */
export class ArchiveFormatError extends Error {
  override readonly name = 'ArchiveFormatError';
  constructor(
    readonly segment: string,
    readonly problem: string,
    options?: { cause?: unknown },
  ) {
    super(`Archive segment "${segment}" is malformed: ${problem}`, options);
  }
}

/**
 * The store replaced an object at a version it no longer had (an S3-compatible server that ignores `If-Match` on PUT):
 * a segment's rewrite could then switch its manifest over another's and bring erased rows back, or lose kept ones.
 */
export class ArchiveConditionalWriteError extends Error {
  override readonly name = 'ArchiveConditionalWriteError';
  constructor(readonly location: string) {
    super(
      `The archive store ${location} replaced an object at a version it no longer had (it ignores If-Match on PUT): ` +
        'archived segments are not rewritten on it; use a store that honours conditional writes',
    );
  }
}

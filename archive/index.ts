/**
 * The journal archive: segments of journal rows as gzip NDJSON files plus a manifest each, in a local directory or an
 * S3-compatible bucket (docs/archive.md). What the maintenance workflow, cold replay and erasure call.
 */
export { createArchiveStore } from './create-store';
export { createLocalStore } from './local-store';
export { createS3Store } from './s3-store';
export { withSignal, type ArchiveStore, type StoreCallOptions, type StoredObject } from './store';
export type { ProgressListener } from './digest';
export { writeSegment, verifySegment, type WriteSegmentInput } from './write-segment';
export { readSegment, type ReadSegmentOptions } from './read-segment';
export { rewriteSegment, sweepSegment, type RewriteResult, type RowDecision } from './rewrite-segment';
export { settlePendingWrite, type PendingWrite, type PendingWriteLog } from './pending-writes';
export { restoreSegment } from './restore-segment';
export { deleteIncompleteSegments, deleteSegment } from './delete-segment';
export { checkConditionalWrites } from './conditional-writes';
export { journalArchiveRows, type JournalArchiveSource } from '../repository/journal-archive';
export {
  findManifest,
  listSegments,
  readManifest,
  SEGMENT_FORMAT,
  SEGMENT_FORMAT_VERSION,
  type SegmentManifest,
} from './manifest';
export { canonicalTime, rowMatcher, segmentMayMatch, type RowFilter, type RowPredicate } from './filter';
export type { ArchiveRow } from './row';
export * from './errors';

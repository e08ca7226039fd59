import { ArchiveFormatError, SegmentNotFoundError } from './errors';
import { readSmallObject, type ArchiveStore } from './store';

/** What a manifest says it describes; a reader refuses any other format or version. */
export const SEGMENT_FORMAT = 'crm-events-sink/journal-segment';
export const SEGMENT_FORMAT_VERSION = 1;

/** Where segments live in a store: segments/<name>/manifest.json beside segments/<name>/<name>.g<N>.ndjson.gz. */
/** The prefix of every segment's objects (segmentPrefix). */
export const SEGMENTS = 'segments/';
const MANIFEST = 'manifest.json';

/** Describes one archived segment: its file, what it holds, and the checksums that verify it. */
export interface SegmentManifest {
  format: typeof SEGMENT_FORMAT;
  version: typeof SEGMENT_FORMAT_VERSION;
  /** The segment's name, unique in the store (e.g. the partition's name). */
  segment: string;
  /** The table or partition the rows came from. */
  table: string;
  /** The partition's bounds (or the exported window) on its partition key, [from, to); null when it had none. */
  bounds: { from: string; to: string } | null;
  rows: number;
  /** Smallest and largest id; null when the segment holds no row. */
  id: { min: number; max: number } | null;
  /** Earliest and latest received_at (ISO 8601 UTC, microseconds); null when the segment holds no row. */
  received_at: { min: string; max: string } | null;
  file: {
    key: string;
    compression: 'gzip';
    /** Size and sha256 (hex) of the file as stored, compressed. */
    bytes: number;
    sha256: string;
    /** Size and sha256 (hex) of the NDJSON inside it. */
    ndjson_bytes: number;
    ndjson_sha256: string;
  };
  created_at: string;
  /** 1 when archived, one more with each rewrite (erasure); each generation has its own file key. */
  generation: number;
  /** The latest rewrite, when there was one: what it did to the previous generation's rows. */
  rewrite?: { at: string; kept: number; dropped: number; replaced: number };
}

const SEGMENT_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$/;

/** Throws unless name can be a segment name (one path part: letters, digits, '.', '_', '-'). */
export function assertSegmentName(name: string): void {
  if (!SEGMENT_NAME.test(name)) {
    throw new ArchiveFormatError(name, "segment names are letters, digits, '.', '_', '-' (at most 200)");
  }
}

export const manifestKey = (segment: string) => `${SEGMENTS}${segment}/${MANIFEST}`;
/** A generation's file; a rewrite's also carries a random tag, so that two rewrites never write one key. */
export const dataKey = (segment: string, generation: number, tag?: string) =>
  `${SEGMENTS}${segment}/${segment}.g${generation}${tag ? `-${tag}` : ''}.ndjson.gz`;
/** The prefix every object of a segment has. */
export const segmentPrefix = (segment: string) => `${SEGMENTS}${segment}/`;

/** The manifest of a segment; SegmentNotFoundError when it has none (never archived, or archiving did not finish). */
export async function readManifest(store: ArchiveStore, segment: string): Promise<SegmentManifest> {
  const manifest = await findManifest(store, segment);
  if (!manifest) throw new SegmentNotFoundError(segment);
  return manifest;
}

/** The manifest of a segment, or undefined when it has none. */
export async function findManifest(store: ArchiveStore, segment: string): Promise<SegmentManifest | undefined> {
  assertSegmentName(segment);
  let bytes: Buffer;
  try {
    bytes = await readSmallObject(store, manifestKey(segment), MANIFEST_MAX_BYTES);
  } catch (err) {
    if ((err as Error).name === 'ArchiveObjectNotFoundError') return undefined;
    throw err;
  }
  return parseManifest(bytes, segment);
}

/** Manifests are a few KiB; anything much larger is not one. */
const MANIFEST_MAX_BYTES = 1024 * 1024;

/**
 * The manifest of a segment and its version in the store, read together (what switchManifest compares);
 * SegmentNotFoundError when it has none.
 */
export async function readManifestVersion(
  store: ArchiveStore,
  segment: string,
): Promise<{ manifest: SegmentManifest; version: string }> {
  assertSegmentName(segment);
  const read = await store.readVersioned(manifestKey(segment), MANIFEST_MAX_BYTES);
  if (!read) throw new SegmentNotFoundError(segment);
  return { manifest: parseManifest(read.bytes, segment), version: read.version };
}

/**
 * Switches a segment to a new manifest if the one in force is still at `version`: a rewrite that lost its turn (its
 * lock gone with its connection) can never put its generation over the one written meanwhile.
 * ArchiveObjectChangedError when another switch came first.
 */
export async function switchManifest(store: ArchiveStore, manifest: SegmentManifest, version: string): Promise<void> {
  await store.replaceIfVersion(manifestKey(manifest.segment), manifestBytes(manifest), version);
}

const manifestBytes = (manifest: SegmentManifest) => Buffer.from(JSON.stringify(manifest, null, 2) + '\n');

/** Writes a manifest; the store's put replaces the previous one in one step. */
export async function writeManifest(store: ArchiveStore, manifest: SegmentManifest): Promise<void> {
  await store.put(manifestKey(manifest.segment), manifestBytes(manifest));
}

/** Every segment's manifest, ordered by segment name (for GET /archive and the cold replay's planning). */
export async function listSegments(store: ArchiveStore): Promise<SegmentManifest[]> {
  const manifests: SegmentManifest[] = [];
  for await (const object of store.list(SEGMENTS)) {
    const parts = object.key.slice(SEGMENTS.length).split('/');
    if (parts.length !== 2 || parts[1] !== MANIFEST) continue;
    manifests.push(parseManifest(await readSmallObject(store, object.key, MANIFEST_MAX_BYTES), parts[0]));
  }
  return manifests.sort((a, b) => (a.segment < b.segment ? -1 : a.segment > b.segment ? 1 : 0));
}

function parseManifest(bytes: Buffer, segment: string): SegmentManifest {
  let value: Partial<SegmentManifest>;
  try {
    value = JSON.parse(bytes.toString('utf8')) as Partial<SegmentManifest>;
  } catch (err) {
    throw new ArchiveFormatError(segment, 'manifest is not JSON', { cause: err });
  }
  if (value.format !== SEGMENT_FORMAT || value.version !== SEGMENT_FORMAT_VERSION) {
    throw new ArchiveFormatError(
      segment,
      `manifest format ${String(value.format)} version ${String(value.version)}, expected ${SEGMENT_FORMAT} version ${SEGMENT_FORMAT_VERSION}`,
    );
  }
  if (value.segment !== segment) throw new ArchiveFormatError(segment, `manifest names segment ${value.segment}`);
  const file = value.file;
  if (
    !Number.isSafeInteger(value.rows) ||
    !Number.isSafeInteger(value.generation) ||
    !file ||
    typeof file.key !== 'string' ||
    !/^[0-9a-f]{64}$/.test(file.sha256) ||
    !/^[0-9a-f]{64}$/.test(file.ndjson_sha256)
  ) {
    throw new ArchiveFormatError(segment, 'manifest lacks rows, generation or file checksums');
  }
  return value as SegmentManifest;
}

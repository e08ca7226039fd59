import type { Readable } from 'node:stream';
import { ArchiveKeyError } from './errors';

/** An object as a store lists it. */
export interface StoredObject {
  key: string;
  /** Size in bytes. */
  size: number;
  lastModified: Date;
}

/** What one call of a store may be given. */
export interface StoreCallOptions {
  /**
   * Ends the call once aborted (an activity's cancellation): it rejects with an AbortError (or the signal's reason),
   * and a stream it returned is destroyed with one. A put aborted part way leaves the old object or the whole new one,
   * as any failed put.
   */
  signal?: AbortSignal;
}

/**
 * Where archive segments live: a local directory or an S3-compatible bucket, behind one interface. Keys are relative,
 * '/'-separated paths (see assertKey). A `put` is all or nothing: readers see the whole new object or none (or the old
 * one), never a partial write.
 */
export interface ArchiveStore {
  /** What kind of store, for logs and the API. */
  readonly kind: 'local' | 's3';
  /** Where it is (a directory, s3://bucket), for logs and error messages. */
  readonly location: string;
  /** Writes the body under key, replacing any object there; streams, so the body can be larger than memory. */
  put(key: string, body: Readable | Buffer, options?: StoreCallOptions): Promise<StoredObject>;
  /** The object's bytes as a stream; rejects with ArchiveObjectNotFoundError when there is none. */
  get(key: string, options?: StoreCallOptions): Promise<Readable>;
  /** Size and date of the object, or undefined when there is none. */
  stat(key: string, options?: StoreCallOptions): Promise<StoredObject | undefined>;
  /** Every object whose key starts with prefix (in no promised order: callers sort what they show). */
  list(prefix: string, options?: StoreCallOptions): AsyncIterable<StoredObject>;
  /**
   * A small object's bytes (at most maxBytes) and its version, read together, or undefined when there is none. The
   * version is what replaceIfVersion compares (an S3 ETag; the local store's sha256 of the bytes).
   */
  readVersioned(
    key: string,
    maxBytes: number,
    options?: StoreCallOptions,
  ): Promise<{ bytes: Buffer; version: string } | undefined>;
  /**
   * Replaces a small object only while it is still at `version` (as readVersioned gave it), in one step with the
   * check: ArchiveObjectChangedError, and nothing written, when it has changed or gone.
   */
  replaceIfVersion(key: string, body: Buffer, version: string, options?: StoreCallOptions): Promise<void>;
  /** Removes the object; no error when there is none. */
  delete(key: string, options?: StoreCallOptions): Promise<void>;
  /** Releases connections (S3 client); the store is not used after. */
  close(): Promise<void>;
}

/**
 * The store as seen by work that a signal cancels (Temporal activities): every call is given the signal `signalOf`
 * answers at that call, if any (a call that brings its own options keeps them), so an object store that stopped
 * answering holds the work no longer than its cancellation. Closing it does nothing: the store is its creator's.
 */
export function withSignal(store: ArchiveStore, signalOf: () => AbortSignal | undefined): ArchiveStore {
  const options = (): StoreCallOptions | undefined => {
    const signal = signalOf();
    return signal && { signal };
  };
  return {
    kind: store.kind,
    location: store.location,
    put: (key, body, given) => store.put(key, body, given ?? options()),
    get: (key, given) => store.get(key, given ?? options()),
    stat: (key, given) => store.stat(key, given ?? options()),
    list: (prefix, given) => store.list(prefix, given ?? options()),
    readVersioned: (key, maxBytes, given) => store.readVersioned(key, maxBytes, given ?? options()),
    replaceIfVersion: (key, body, version, given) => store.replaceIfVersion(key, body, version, given ?? options()),
    delete: (key, given) => store.delete(key, given ?? options()),
    close: async () => {},
  };
}

// No part may start with a dot: that rules out '.' and '..', and leaves dot-names free for the local store's temp files.
const KEY = /^[A-Za-z0-9_-][A-Za-z0-9._-]*(\/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$/;

/** Throws ArchiveKeyError unless key is a safe relative path: it maps onto a file path and an S3 key alike. */
export function assertKey(key: string): void {
  if (!KEY.test(key) || key.length > 512) throw new ArchiveKeyError(key);
}

/** Reads a whole (small) object, such as a manifest, into memory. */
export async function readSmallObject(store: ArchiveStore, key: string, maxBytes = 1024 * 1024): Promise<Buffer> {
  return collectUpTo(await store.get(key), maxBytes, key, store.location);
}

/** A stream's bytes, or an error naming the object once they pass maxBytes. */
export async function collectUpTo(
  stream: AsyncIterable<unknown>,
  maxBytes: number,
  key: string,
  location: string,
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) throw new Error(`Archive object "${key}" in ${location} is larger than ${maxBytes} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

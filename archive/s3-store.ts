import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  paginateListObjectsV2,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { addAbortSignal, Readable } from 'node:stream';
import type { ArchiveS3Config } from '../shared/config';
import { ArchiveObjectChangedError, ArchiveObjectNotFoundError } from './errors';
import { assertKey, collectUpTo, type ArchiveStore } from './store';

// Multipart: 8 MiB parts, two in flight, so an upload holds about 16 MiB whatever the segment's size.
const PART_SIZE = 8 * 1024 * 1024;
const PARTS_IN_FLIGHT = 2;

// Every request is bounded on its own, cancelled or not: a server that accepts connections and then stops answering
// (frozen, overloaded) fails it after this long without a byte either way; the SDK's few retries bound the rest.
const CONNECT_TIMEOUT_MS = 5_000;
const IDLE_TIMEOUT_MS = 30_000;

/**
 * An archive in an S3 bucket, path-style addressing (what S3-compatible servers expect). Streams go up as multipart
 * uploads; S3 makes an object visible only once its upload completes, so a put is all or nothing.
 */
export function createS3Store(config: ArchiveS3Config): ArchiveStore {
  const client = new S3Client({
    endpoint: config.endpoint,
    region: config.region,
    forcePathStyle: true,
    credentials:
      config.accessKeyId && config.secretAccessKey
        ? { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey }
        : undefined,
    // Not every S3-compatible server checks the SDK's newer default checksums; the archive verifies its own sha256.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: { connectionTimeout: CONNECT_TIMEOUT_MS, socketTimeout: IDLE_TIMEOUT_MS },
  });
  const Bucket = config.bucket;
  const location = `s3://${Bucket}${config.endpoint ? ` at ${config.endpoint}` : ''}`;

  return {
    kind: 's3',
    location,

    async put(key, body, options) {
      assertKey(key);
      const abortSignal = options?.signal;
      if (Buffer.isBuffer(body)) {
        const put = new PutObjectCommand({ Bucket, Key: key, Body: body, ContentLength: body.length });
        await client.send(put, { abortSignal });
      } else {
        await uploadStream(client, { Bucket, Key: key, Body: body }, abortSignal);
      }
      const stored = await this.stat(key, options);
      if (!stored) throw new Error(`Archive object "${key}" missing in ${location} right after it was written`);
      return stored;
    },

    async get(key, options) {
      assertKey(key);
      const abortSignal = options?.signal;
      try {
        const { Body } = await client.send(new GetObjectCommand({ Bucket, Key: key }), { abortSignal });
        if (!(Body instanceof Readable)) throw new Error(`No body for archive object "${key}" in ${location}`);
        // Aborted while the body is read, the stream ends with an AbortError rather than waiting on the server.
        return abortSignal ? addAbortSignal(abortSignal, Body) : Body;
      } catch (err) {
        if (isNotFound(err)) throw new ArchiveObjectNotFoundError(key, location, { cause: err });
        throw err;
      }
    },

    async stat(key, options) {
      assertKey(key);
      try {
        const head = await client.send(new HeadObjectCommand({ Bucket, Key: key }), { abortSignal: options?.signal });
        return { key, size: head.ContentLength ?? 0, lastModified: head.LastModified ?? new Date(0) };
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    },

    async *list(prefix, options) {
      const pages = paginateListObjectsV2({ client }, { Bucket, Prefix: prefix }, { abortSignal: options?.signal });
      for await (const page of pages) {
        for (const object of page.Contents ?? []) {
          if (object.Key === undefined) continue;
          yield { key: object.Key, size: object.Size ?? 0, lastModified: object.LastModified ?? new Date(0) };
        }
      }
    },

    async readVersioned(key, maxBytes, options) {
      assertKey(key);
      const abortSignal = options?.signal;
      try {
        const { Body, ETag } = await client.send(new GetObjectCommand({ Bucket, Key: key }), { abortSignal });
        if (!(Body instanceof Readable) || !ETag) throw new Error(`No body or ETag for "${key}" in ${location}`);
        return { bytes: await collectUpTo(Body, maxBytes, key, location), version: ETag };
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    },

    async replaceIfVersion(key, body, version, options) {
      assertKey(key);
      // S3's conditional write: the server checks the ETag and writes in one step.
      const put = new PutObjectCommand({ Bucket, Key: key, Body: body, ContentLength: body.length, IfMatch: version });
      try {
        await client.send(put, { abortSignal: options?.signal });
      } catch (err) {
        if (isChanged(err)) throw new ArchiveObjectChangedError(key, location, { cause: err });
        throw err;
      }
    },

    async delete(key, options) {
      assertKey(key);
      await client.send(new DeleteObjectCommand({ Bucket, Key: key }), { abortSignal: options?.signal });
    },

    async close() {
      client.destroy();
    },
  };
}

/**
 * A multipart upload of a stream. Aborted, it rejects at once; lib-storage does not give its signal to the requests in
 * flight, which end by their own timeouts, and then aborts the multipart upload instead of completing it. The object
 * never appears half written: at worst a whole one without its manifest, which the next archiving overwrites.
 */
async function uploadStream(
  client: S3Client,
  params: { Bucket: string; Key: string; Body: Readable },
  signal: AbortSignal | undefined,
): Promise<void> {
  signal?.throwIfAborted();
  // Upload takes a controller and sets its signal's onabort: one of its own, tied to the caller's signal.
  const abortController = new AbortController();
  const abort = () => abortController.abort(signal?.reason);
  signal?.addEventListener('abort', abort, { once: true });
  try {
    const upload = new Upload({
      client,
      params,
      partSize: PART_SIZE,
      queueSize: PARTS_IN_FLIGHT,
      leavePartsOnError: false,
      abortController,
    });
    await upload.done();
  } finally {
    signal?.removeEventListener('abort', abort);
  }
}

/** A conditional write refused: the ETag no longer matches (412), another conditional write raced it (409), or gone. */
function isChanged(err: unknown): boolean {
  const { name } = (err ?? {}) as { name?: string };
  return name === 'PreconditionFailed' || name === 'ConditionalRequestConflict' || isNotFound(err);
}

// By name, not by status 404: a missing bucket (NoSuchBucket) is a configuration error, not a missing object.
function isNotFound(err: unknown): boolean {
  const { name } = (err ?? {}) as { name?: string };
  return name === 'NoSuchKey' || name === 'NotFound';
}

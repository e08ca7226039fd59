import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  paginateListObjectsV2,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { Readable } from 'node:stream';
import type { ArchiveS3Config } from '../shared/config';
import { ArchiveObjectNotFoundError } from './errors';
import { assertKey, type ArchiveStore } from './store';

// Multipart: 8 MiB parts, two in flight, so an upload holds about 16 MiB whatever the segment's size.
const PART_SIZE = 8 * 1024 * 1024;
const PARTS_IN_FLIGHT = 2;

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
  });
  const Bucket = config.bucket;
  const location = `s3://${Bucket}${config.endpoint ? ` at ${config.endpoint}` : ''}`;

  return {
    kind: 's3',
    location,

    async put(key, body) {
      assertKey(key);
      if (Buffer.isBuffer(body)) {
        await client.send(new PutObjectCommand({ Bucket, Key: key, Body: body, ContentLength: body.length }));
      } else {
        const upload = new Upload({
          client,
          params: { Bucket, Key: key, Body: body },
          partSize: PART_SIZE,
          queueSize: PARTS_IN_FLIGHT,
          leavePartsOnError: false,
        });
        await upload.done();
      }
      const stored = await this.stat(key);
      if (!stored) throw new Error(`Archive object "${key}" missing in ${location} right after it was written`);
      return stored;
    },

    async get(key) {
      assertKey(key);
      try {
        const { Body } = await client.send(new GetObjectCommand({ Bucket, Key: key }));
        if (!(Body instanceof Readable)) throw new Error(`No body for archive object "${key}" in ${location}`);
        return Body;
      } catch (err) {
        if (isNotFound(err)) throw new ArchiveObjectNotFoundError(key, location, { cause: err });
        throw err;
      }
    },

    async stat(key) {
      assertKey(key);
      try {
        const head = await client.send(new HeadObjectCommand({ Bucket, Key: key }));
        return { key, size: head.ContentLength ?? 0, lastModified: head.LastModified ?? new Date(0) };
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    },

    async *list(prefix) {
      for await (const page of paginateListObjectsV2({ client }, { Bucket, Prefix: prefix })) {
        for (const object of page.Contents ?? []) {
          if (object.Key === undefined) continue;
          yield { key: object.Key, size: object.Size ?? 0, lastModified: object.LastModified ?? new Date(0) };
        }
      }
    },

    async delete(key) {
      assertKey(key);
      await client.send(new DeleteObjectCommand({ Bucket, Key: key }));
    },

    async close() {
      client.destroy();
    },
  };
}

// By name, not by status 404: a missing bucket (NoSuchBucket) is a configuration error, not a missing object.
function isNotFound(err: unknown): boolean {
  const { name } = (err ?? {}) as { name?: string };
  return name === 'NoSuchKey' || name === 'NotFound';
}

import { CreateBucketCommand, DeleteBucketCommand, ListBucketsCommand, S3Client } from '@aws-sdk/client-s3';
import type { ArchiveS3Config } from '../../shared/config';
import { uniqueSuffix } from './env';

// The local stack's S3-compatible server (scripts/stack/s3.sh: versitygw with fixed development credentials), unless
// ARCHIVE_S3_ENDPOINT and its keys name another.
const endpoint = process.env.ARCHIVE_S3_ENDPOINT || `http://127.0.0.1:${process.env.STACK_S3_PORT || 9000}`;
const accessKeyId = process.env.ARCHIVE_S3_ACCESS_KEY_ID || 'crm-events-archive';
const secretAccessKey = process.env.ARCHIVE_S3_SECRET_ACCESS_KEY || 'crm-events-archive-secret';
const region = process.env.ARCHIVE_S3_REGION || 'us-east-1';

const client = () =>
  new S3Client({ endpoint, region, forcePathStyle: true, credentials: { accessKeyId, secretAccessKey } });

/**
 * A fresh bucket on the S3-compatible server for one test file, as the archive config that points at it. Fails (does
 * not skip) when no server answers, saying how to start one.
 */
export async function createTestBucket(label: string): Promise<{ config: ArchiveS3Config; drop(): Promise<void> }> {
  const s3 = client();
  try {
    await s3.send(new ListBucketsCommand({}));
  } catch (err) {
    s3.destroy();
    throw new Error(
      `No S3-compatible server answers at ${endpoint} (${(err as Error).message}). Start the stack's: ` +
        'bash scripts/stack.sh up s3 (or set ARCHIVE_S3_ENDPOINT and its keys to another)',
    );
  }
  const bucket = `crm-test-${label}-${uniqueSuffix()}`.toLowerCase().replace(/[^a-z0-9-]/g, '-');
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  return {
    config: { endpoint, bucket, region, accessKeyId, secretAccessKey },
    async drop() {
      try {
        await s3.send(new DeleteBucketCommand({ Bucket: bucket }));
      } finally {
        s3.destroy();
      }
    },
  };
}

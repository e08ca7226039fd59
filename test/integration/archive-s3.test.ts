import { createArchiveStore, type ArchiveStore } from '../../archive';
import { collect } from '../support/archive';
import { archiveStoreBehaviour } from '../support/archive-store-suite';
import { baseConfig } from '../support/env';
import { createTestBucket } from '../support/s3';

// The archive in a bucket of a real S3-compatible server (the stack's versitygw: bash scripts/stack.sh up s3), through
// the same config and factory as the service (ARCHIVE_STORE=s3). No server: every test fails, saying how to start it.
let bucket: Awaited<ReturnType<typeof createTestBucket>>;
let store: ArchiveStore;

beforeAll(async () => {
  bucket = await createTestBucket('archive');
  const { endpoint, bucket: name, region, accessKeyId, secretAccessKey } = bucket.config;
  const config = baseConfig({
    ARCHIVE_STORE: 's3',
    ARCHIVE_S3_ENDPOINT: endpoint!,
    ARCHIVE_S3_BUCKET: name,
    ARCHIVE_S3_REGION: region,
    ARCHIVE_S3_ACCESS_KEY_ID: accessKeyId!,
    ARCHIVE_S3_SECRET_ACCESS_KEY: secretAccessKey!,
  });
  store = createArchiveStore(config.archive);
});
afterAll(async () => {
  if (store) for (const object of await collect(store.list(''))) await store.delete(object.key);
  await store?.close();
  await bucket?.drop();
});

describe('S3-compatible archive store', () => {
  archiveStoreBehaviour(() => store);

  it('uploads a file larger than one multipart part and reads it back whole', async () => {
    const size = 20 * 1024 * 1024 + 123;
    const body = Buffer.alloc(size);
    for (let i = 0; i < size; i += 4096) body.writeUInt32BE(i, i);
    async function* chunks() {
      for (let at = 0; at < size; at += 1024 * 1024) yield body.subarray(at, at + 1024 * 1024);
    }
    const { Readable } = await import('node:stream');
    const stored = await store.put('multipart/big.bin', Readable.from(chunks()));
    expect(stored.size).toBe(size);
    const back = Buffer.concat((await collect(await store.get('multipart/big.bin'))) as Buffer[]);
    expect(back.equals(body)).toBe(true);
  });
});

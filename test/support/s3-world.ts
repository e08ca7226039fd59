import type { Client } from '@temporalio/client';
import { createArchiveStore, type ArchiveStore } from '../../archive';
import { createTestBucket } from './s3';
import { createSinkHarness, type SinkHarness } from './sink';
import { connectClient } from './temporal';

/**
 * What the suites that run real workers against S3 start from: a private harness, a fresh bucket and the archive
 * store on it (what the test reads and writes segments through), and a client of the dev Temporal server.
 */
export interface S3World {
  h: SinkHarness;
  bucket: Awaited<ReturnType<typeof createTestBucket>>;
  store: ArchiveStore;
  client: Client;
  /** Closes the client, the store and the harness (the bucket stays: the server may hold objects in it). */
  close(): Promise<void>;
}

export async function createS3World(label: string): Promise<S3World> {
  const h = await createSinkHarness(label);
  const bucket = await createTestBucket(label);
  const store = createArchiveStore({ ...h.config.archive, store: 's3', s3: bucket.config });
  const client = await connectClient(h.config.temporal);
  return {
    h,
    bucket,
    store,
    client,
    async close() {
      await client.connection.close();
      await store.close();
      await h.close();
    },
  };
}

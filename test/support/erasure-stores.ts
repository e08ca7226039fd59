import { createArchiveStore, type ArchiveStore } from '../../archive';
import { createTestBucket } from './s3';
import { createSinkHarness, type SinkHarness } from './sink';

/**
 * A sink harness (its private local archive) and a private S3 bucket on the stack's server, for suites that run an
 * erasure's archive pass on both stores: the hooks are registered here; `h()` and `stores` are read inside tests.
 */
export function erasureStoresWorld(label: string) {
  let h: SinkHarness | undefined;
  let s3: ArchiveStore | undefined;
  let dropBucket: (() => Promise<void>) | undefined;
  beforeAll(async () => {
    h = await createSinkHarness(label);
    const bucket = await createTestBucket(label);
    dropBucket = bucket.drop;
    s3 = createArchiveStore({ ...h.config.archive, store: 's3', s3: bucket.config });
  }, 60_000);
  afterAll(async () => {
    await s3?.close();
    await dropBucket?.().catch(() => undefined);
    await h?.close();
  });
  return {
    h: () => h!,
    /** For describe.each: ['local', the harness's store] and ['s3', the bucket's]. */
    stores: [
      ['local', () => h!.archive],
      ['s3', () => s3!],
    ] as [string, () => ArchiveStore][],
  };
}

/** What the S3 client throws for a 503 (the SDK's error shape), for stores made to fail as S3 does. */
export const s3Unavailable = () =>
  Object.assign(new Error('Service Unavailable'), { name: 'ServiceUnavailable', $metadata: { httpStatusCode: 503 } });

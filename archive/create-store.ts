import type { ArchiveConfig } from '../shared/config';
import { createLocalStore } from './local-store';
import { createS3Store } from './s3-store';
import type { ArchiveStore } from './store';

/** The archive store the configuration names (ARCHIVE_STORE): the one place that chooses. */
export function createArchiveStore(config: ArchiveConfig): ArchiveStore {
  if (config.store === 's3') {
    if (!config.s3) throw new Error('ARCHIVE_STORE=s3 without its ARCHIVE_S3_* settings');
    return createS3Store(config.s3);
  }
  return createLocalStore(config.dir);
}

import { createArchiveRangeActivities } from './archive-range';
import { createAuditActivities } from './audit';
import type { ActivityDeps } from './deps';
import { createDlqBulkActivities } from './dlq-bulk';
import { createDlqActivities } from './dlq-retry';
import { createDlqRepairActivities } from './dlq-repair';
import { createMaintenanceActivities } from './maintenance';
import { createErasureActivities } from './erasure';
import { createNotificationActivities } from './notification';
import { createRangeActivities } from './range';
import { createRangeShardActivities } from './range-shards';
import { createReplayActivities } from './replay';

export type { ActivityDeps } from './deps';

/** Every activity the replay worker registers, bound to its dependencies. */
export function createActivities(deps: ActivityDeps) {
  return {
    ...createAuditActivities(deps),
    ...createReplayActivities(deps),
    ...createRangeActivities(deps),
    ...createRangeShardActivities(deps),
    ...createArchiveRangeActivities(deps),
    ...createDlqActivities(deps),
    ...createDlqRepairActivities(deps),
    ...createDlqBulkActivities(deps),
    ...createMaintenanceActivities(deps),
    ...createErasureActivities(deps),
    ...createNotificationActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;

import { withSignal } from '../archive';
import { activityCancellation } from './cancellation';
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

/**
 * Every activity the replay worker registers, bound to its dependencies. Each sees the archive through its own
 * cancellation: a worker stopped while an activity waits on a frozen object store ends that activity at the SDK's
 * cancel, not at its forced stop (maintenance, cold replay and erasure alike).
 */
export function createActivities(given: ActivityDeps) {
  const deps = { ...given, archive: withSignal(given.archive, activityCancellation) };
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

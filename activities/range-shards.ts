import { getClient } from '@temporalio/activity';
import type { ReplayOrdering } from '../journal/kinds';
import { rangeIdShards, rangeKeyShardCounts, type RangeFilter } from '../repository/event-journal';
import { withTimeout } from '../shared/timeout';
import { progressQuery, type ShardReport } from '../workflows/definitions';
import type { ActivityDeps } from './deps';

/** One child's part of a sharded range replay: an id range (after < id <= upTo), or a key shard of the whole range. */
export interface RangeShard {
  by: 'id' | 'key';
  index: number;
  of: number;
  after: number;
  upTo: number;
  /** Matching journal rows in it when planned. */
  events: number;
}

/** How long shardCounts waits for one child's answer. */
const SHARD_QUERY_TIMEOUT_MS = 10_000;

/** Sharded range replay: how a pinned range is cut between child workflows (workflows/range-shards.ts). */
export function createRangeShardActivities({ pool }: Pick<ActivityDeps, 'pool'>) {
  return {
    /**
     * Cuts the pinned range into at most `shards` parts holding about as many matching rows each: contiguous id
     * ranges, or under per_key ordering the keys hashed into `shards` buckets (all events of a key in one part, so
     * that one child sends them, in journal order). Parts with no matching row are left out.
     */
    async planShards(filter: RangeFilter, shards: number, ordering?: ReplayOrdering): Promise<RangeShard[]> {
      if (ordering === 'per_key') {
        const counts = await rangeKeyShardCounts(pool, filter, shards);
        return counts
          .map((events, index) => ({ by: 'key' as const, index, of: shards, after: 0, upTo: filter.maxId, events }))
          .filter((shard) => shard.events > 0);
      }
      const parts = await rangeIdShards(pool, filter, shards);
      return parts.map((part, index) => ({ by: 'id' as const, index, of: parts.length, ...part }));
    },

    /**
     * The counts the children of a sharded replay answer themselves once they have closed (a closed workflow still
     * answers its progress query: a worker replays its history), so that the audit row of a cancelled or failed
     * replay counts what its children sent, not their last reports. Each answer is bounded by SHARD_QUERY_TIMEOUT_MS;
     * a child that does not answer is null (its coordinator keeps its last report).
     */
    async shardCounts(workflowIds: string[]): Promise<(Omit<ShardReport, 'index'> | null)[]> {
      const client = getClient();
      return Promise.all(
        workflowIds.map(async (workflowId) => {
          try {
            const { published, failed, pages, cursor } = await withTimeout(
              client.workflow.getHandle(workflowId).query(progressQuery),
              SHARD_QUERY_TIMEOUT_MS,
              `${workflowId} did not answer`,
            );
            return { published, failed, pages, cursor };
          } catch {
            return null;
          }
        }),
      );
    },
  };
}

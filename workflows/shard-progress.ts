import type { ReplayProgress, ShardProgress } from './definitions';

/**
 * The progress view of a sharded range replay, built from its children's counts: by the coordinator from the reports
 * its history holds (workflows/range-shards.ts), and by the API from the children's own progress queries
 * (withChildProgress), so that the view is as fresh as the children while they run although their reports to the
 * coordinator grow rarer the longer they run.
 */

/** What a sharded replay's totals are made of: its children's counts. */
export type ShardTotals = Pick<ReplayProgress, 'published' | 'failed' | 'pages' | 'cursor' | 'eventsPerSecond'>;

/** Events per second to one decimal, as every progress view shows it. */
export const perSecond = (events: number, seconds: number): number =>
  Math.round((events / Math.max(0.001, seconds)) * 10) / 10;

/**
 * The totals of a sharded replay: the sums of its children's counts, and as cursor the lowest one of the children
 * still running (a finished child leaves the minimum, which can then only rise). With none running, `idleCursor`:
 * 0 while the shards are being planned, the range's maxId once all are done.
 */
export function shardTotals(shards: ShardProgress[], idleCursor: number): ShardTotals {
  const sum = (field: 'published' | 'failed' | 'pages' | 'eventsPerSecond') =>
    shards.reduce((total, shard) => total + shard[field], 0);
  const cursors = shards.filter((shard) => shard.status !== 'completed').map((shard) => shard.cursor);
  return {
    published: sum('published'),
    failed: sum('failed'),
    pages: sum('pages'),
    cursor: cursors.length > 0 ? Math.min(...cursors) : idleCursor,
    eventsPerSecond: Math.round(sum('eventsPerSecond') * 10) / 10,
  };
}

/** Whether a child's own counts may replace what its coordinator holds: reports are cumulative, `pages` only grows. */
export const notBehind = (own: Pick<ShardTotals, 'pages'>, known: Pick<ShardTotals, 'pages'> | undefined): boolean =>
  own.pages >= (known?.pages ?? 0);

/**
 * The coordinator's view with each unfinished child's counts replaced by what that child answers itself, when it
 * answered and is not behind the coordinator's copy (reports are cumulative; `pages` only grows). A child that did
 * not answer (null: between two runs, its worker busy) keeps its last report and is marked stale.
 */
export function withChildProgress(
  parent: ReplayProgress,
  answers: ReadonlyMap<string, ReplayProgress | null>,
): ReplayProgress {
  if (!parent.shards) return parent;
  const shards = parent.shards.map((shard): ShardProgress => {
    if (shard.status === 'completed') return shard;
    const own = answers.get(shard.workflow_id);
    if (own === null) return { ...shard, stale: true };
    if (!own || !notBehind(own, shard)) return shard;
    const { published, failed, pages, cursor, eventsPerSecond } = own;
    return { ...shard, published, failed, pages, cursor, eventsPerSecond };
  });
  return { ...parent, ...shardTotals(shards, parent.cursor), shards };
}

import { Context } from '@temporalio/activity';
import { countRange, maxEventId, rangePage, type RangeFilter } from '../repository/event-journal';
import type { RangeCountSummary } from '../workflows/definitions';
import type { ActivityDeps } from './deps';
import { refusalOf, toReplayMessage, type Lineage } from './lineage';
import { publishMessages } from './publish';

export type RangeSelection = Omit<RangeFilter, 'maxId'>;

export interface RangePageInput extends Lineage {
  filter: RangeFilter;
  cursor: number;
  limit: number;
}

export interface RangePageResult {
  /** Id of the last row read: the next page starts after it. */
  cursor: number;
  read: number;
  published: number;
  failed: number;
  done: boolean;
}

/** Range replay: plan (pin and count the range), dry-run counts, and one keyset page per activity. */
export function createRangeActivities({ pool, producer, metrics, config }: ActivityDeps) {
  return {
    /** Pins the range to the journal as it is now (replays journaled meanwhile are never picked up) and counts it. */
    async planRange(selection: RangeSelection): Promise<{ filter: RangeFilter; total: number }> {
      const filter = { ...selection, maxId: await maxEventId(pool) };
      const counts = await countRange(pool, filter);
      return { filter, total: counts.reduce((sum, c) => sum + c.events, 0) };
    },

    async countRangeEvents(selection: RangeSelection): Promise<RangeCountSummary> {
      const counts = await countRange(pool, { ...selection, maxId: await maxEventId(pool) });
      const summary: RangeCountSummary = { matched: 0, by_topic: {}, by_tenant: {} };
      for (const { topic, tenant_id, events } of counts) {
        summary.matched += events;
        summary.by_topic[topic] = (summary.by_topic[topic] ?? 0) + events;
        summary.by_tenant[tenant_id] = (summary.by_tenant[tenant_id] ?? 0) + events;
      }
      return summary;
    },

    /**
     * Reads one page after the cursor and sends it in one producer call, then heartbeats the result. A retried
     * attempt whose previous try already sent the page finds it in the heartbeat and returns it without resending.
     */
    async replayRangePage(input: RangePageInput): Promise<RangePageResult> {
      const ctx = Context.current();
      const sent = ctx.info.heartbeatDetails as RangePageResult | undefined;
      if (sent && sent.cursor > input.cursor) return sent;
      const rows = await rangePage(pool, input.filter, input.cursor, input.limit);
      const messages = [];
      let failed = 0;
      for (const row of rows) {
        if (refusalOf(row, config.replay.maxHops)) failed += 1;
        else messages.push(toReplayMessage(row, input));
      }
      await publishMessages(producer, messages);
      metrics.replayPublished.inc({ kind: 'range' }, messages.length);
      const result: RangePageResult = {
        cursor: rows.length ? rows[rows.length - 1].id : input.cursor,
        read: rows.length,
        published: messages.length,
        failed,
        done: rows.length < input.limit,
      };
      ctx.heartbeat(result);
      return result;
    },
  };
}

import { BULK_RULES } from '../journal/dead-letter';
import type { DlqBulkAction, DlqStatus } from '../journal/kinds';
import { changeDlqStatus, dlqBulkPage, pinDlqBulk, type DlqBulkCount, type DlqFilter } from '../repository/event-dlq';
import type { ActivityDeps } from './deps';

export type { DlqFilter } from '../repository/event-dlq';

export interface DlqBulkPageInput {
  action: DlqBulkAction;
  filter: DlqFilter;
  bulkId: string;
  afterId: number;
  maxId: number;
  limit: number;
}

export interface DlqBulkChangeInput {
  action: Exclude<DlqBulkAction, 'retry'>;
  ids: number[];
  bulkId: string;
  reason?: string;
  /** Workflow time (ms). */
  now: number;
}

/**
 * Bulk DLQ actions (dlqBulkWorkflow): plan (count and pin the newest id), read a page, change statuses. Retry-now is
 * not here: the workflow hands each page to the DLQ retry's own activity (dlq-retry.ts).
 */
export function createDlqBulkActivities({ pool }: ActivityDeps) {
  return {
    /** Pinned: the dead letters being written when it pins are waited for, so none below max_id commits later. */
    async planDlqBulk(input: { action: DlqBulkAction; filter: DlqFilter }): Promise<DlqBulkCount> {
      return pinDlqBulk(pool, input.filter, BULK_RULES[input.action].from);
    },

    async readDlqBulkPage(input: DlqBulkPageInput): Promise<number[]> {
      const { action, ...page } = input;
      return dlqBulkPage(pool, { ...page, statuses: BULK_RULES[action].from });
    },

    /**
     * Moves a page's entries: how many it moved (an entry moved by an earlier attempt counts once), under their new
     * status, and how many it skipped (moved by someone else since the page was read).
     */
    async changeDlqBulkStatus(input: DlqBulkChangeInput): Promise<Partial<Record<DlqStatus | 'skipped', number>>> {
      const rule = BULK_RULES[input.action];
      const moved = await changeDlqStatus(pool, {
        ids: input.ids,
        from: rule.from,
        to: rule.to,
        bulkId: input.bulkId,
        discardReason: input.reason,
        now: new Date(input.now),
      });
      return { [rule.to]: moved, skipped: input.ids.length - moved };
    },
  };
}

import { appendOne, withJournaling } from '../journal/append';
import type { DlqRepairOutcome, DlqRepairStatus } from '../journal/kinds';
import { checkRepairs, settledEntry, type RepairContext, type RepairEdit } from '../journal/repair';
import {
  dlqPage,
  getDlqEntry,
  markDlqResolved,
  pinDlqSelection,
  type DlqFilter,
  type DlqRecord,
} from '../repository/event-dlq';
import { finishRepair, insertRepair, recordRepairOutcome, repairCounts } from '../repository/dlq-repair';
import type { PoolClient } from '../shared/db';
import type { ActivityDeps } from './deps';

export type { RepairEdit } from '../journal/repair';

export interface RepairPageInput {
  repairId: string;
  selection: DlqFilter;
  edit: RepairEdit;
  tenantScope?: string;
  /** Entries with ids above it, up to maxId. */
  cursor: number;
  maxId: number;
  limit: number;
  /** Workflow time (ms): the entries' resolved_at. */
  now: number;
}

export interface RepairPageResult {
  /** The last entry id this page looked at. */
  cursor: number;
  done: boolean;
}

/**
 * DLQ repair: each selected entry, in a transaction of its own, is locked, checked (journal/repair.ts) and, if it
 * passes, journaled through the one append path with its repair lineage and marked resolved; what became of it is
 * recorded in the same transaction (dlq_repair_entries). An entry that fails the check is recorded and left as it
 * was. A retried call finds the entries it already did resolved and their outcomes recorded: none is journaled twice.
 */
export function createDlqRepairActivities({ pool, config, log, lineageKey }: ActivityDeps) {
  const parse = { maxBytes: config.ingest.maxEventBytes, lineageKey };
  return {
    /**
     * Records the repair (its audit row; idempotent) and pins its selection at the newest entry id it matches, waiting
     * for the dead letters being written, so that none below the pin commits later (pinDlqSelection).
     */
    async startDlqRepair(input: {
      repairId: string;
      selection: DlqFilter;
      edit: RepairEdit;
      tenantScope?: string;
      requestedBy: string;
      reason?: string;
    }): Promise<{ matched: number; maxId: number }> {
      await insertRepair(pool, {
        id: input.repairId,
        requestedBy: input.requestedBy,
        tenantId: input.tenantScope,
        edit: input.edit,
        selection: input.selection,
        reason: input.reason,
      });
      return pinDlqSelection(pool, input.selection);
    },

    async repairDlqPage(input: RepairPageInput): Promise<RepairPageResult> {
      const page = await dlqPage(pool, input.selection, {
        after: input.cursor,
        maxId: input.maxId,
        limit: input.limit,
      });
      const ctx: RepairContext = { repairId: input.repairId, parse, tenantScope: input.tenantScope };
      for (const { id } of page) {
        const outcome = await withJournaling(pool, (client) => repairOne(client, id, input, ctx));
        if (outcome !== 'journaled') log.info({ repair_id: input.repairId, dlq_id: id, outcome }, 'DLQ repair');
      }
      return { cursor: page.at(-1)?.id ?? input.cursor, done: page.length < input.limit };
    },

    /** Marks the repair ended and returns its outcome counts (from the audit: right however often pages ran). */
    async finishDlqRepair(input: {
      repairId: string;
      status: Exclude<DlqRepairStatus, 'running'>;
      error?: string;
    }): Promise<Record<DlqRepairOutcome, number>> {
      await finishRepair(pool, input.repairId, input.status, input.error);
      return repairCounts(pool, input.repairId);
    },
  };
}

async function repairOne(
  client: PoolClient,
  id: number,
  input: RepairPageInput,
  ctx: RepairContext,
): Promise<DlqRepairOutcome> {
  const record = (outcome: DlqRepairOutcome, detail: { journal_id?: number; error?: string } = {}) =>
    recordRepairOutcome(client, input.repairId, { dlq_id: id, outcome, ...detail }).then(() => outcome);
  const entry: DlqRecord | undefined = await getDlqEntry(client, id, true);
  if (!entry) return record('skipped', { error: 'The entry no longer exists' });
  // Resolved by this very repair in an earlier attempt (its outcome is recorded: this one is not), by another, or
  // discarded by an operator.
  const settled = settledEntry(entry);
  if (settled) return record('skipped', { error: settled });
  const [check] = await checkRepairs(client, [entry], input.edit, ctx);
  if (!check.entry) return record('invalid', { error: check.error });
  const journaled = await appendOne(client, check.entry);
  if ('error' in journaled) return record('invalid', { error: journaled.error });
  await markDlqResolved(client, entry.id, journaled.journalId, new Date(input.now));
  return record('journaled', { journal_id: journaled.journalId });
}

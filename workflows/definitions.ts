import { defineQuery, defineSignal } from '@temporalio/workflow';
import type {
  DlqBulkAction,
  DlqRepairOutcome,
  DlqStatus,
  ReplayOrdering,
  WORKFLOW_END_STATUSES,
} from '../journal/kinds';
import type { DlqFilter } from '../activities/dlq-bulk';
import type { RepairEdit } from '../activities/dlq-repair';
import type { ReplayTransform } from '../activities/replay-messages';
import type { ArchivePosition } from '../activities/archive-range';
import type { RangeCountSummary } from '../activities/range';
import type { ErasedEvent, RefusedEvent } from '../activities/replay';

export type { RangeCountSummary } from '../activities/range';
export type { ErasedEvent, RefusedEvent } from '../activities/replay';

/** Where a replay came from; also the journal's replay_source and the CrmReplaySource search attribute. */
export type ReplaySource = 'operator_api' | 'batch' | 'range' | 'automated' | 'cli' | string;

export interface ReplayEventInput {
  eventId: number;
  source: ReplaySource;
  requestedBy?: string;
  targetTopic?: string;
  /** Set when the requester is scoped to one tenant: another tenant's event is treated as not found. */
  tenantId?: string;
  /** A JSON Patch applied to the payload before it is sent (checked by the API). */
  transform?: ReplayTransform;
}

export interface ReplayEventResult {
  status: 'replayed';
  event_id: number;
  topic: string;
  tenant_id: string;
  workflow_id: string;
  replay_count: number;
}

export interface BatchReplayInput {
  ids: number[];
  source: ReplaySource;
  requestedBy?: string;
  targetTopic?: string;
  tenantId?: string;
  pageSize?: number;
  /** A JSON Patch applied to each payload before it is sent (checked by the API). */
  transform?: ReplayTransform;
  /** per_key: ids are replayed in journal (id) order, and each key's events reach the target in that order. */
  ordering?: ReplayOrdering;
}

export interface BatchReplayResult {
  status: 'completed';
  workflow_id: string;
  requested: number;
  published: number;
  unknown_ids: number[];
  refused: RefusedEvent[];
  /** Ids an erasure deleted (each with the erasure's id): not replayed, not retried. */
  erased: ErasedEvent[];
}

export interface RangeReplayInput {
  start: string;
  end: string;
  tenantId?: string;
  topic?: string;
  includeReplays?: boolean;
  /** Only events whose payload matches this JSONPath predicate (checked by the API before it starts the workflow). */
  payloadFilter?: string;
  targetTopic?: string;
  dryRun?: boolean;
  maxEventsPerSecond?: number;
  source: ReplaySource;
  requestedBy?: string;
  /** Rows per keyset page (default 500). */
  pageSize?: number;
  /** Most pages one activity call replays when no rate limit is set (default PAGES_PER_CALL). */
  pagesPerCall?: number;
  /** The request was scoped to one tenant: without a target, only events of the ingested topics are replayed. */
  tenantScoped?: boolean;
  /** A JSON Patch applied to each payload before it is sent (checked by the API); a dry run previews it. */
  transform?: ReplayTransform;
  /** per_key: each key's events reach the target in journal order (docs/integrity.md, "Per-key ordering"). */
  ordering?: ReplayOrdering;
  /** Split into child workflows when the range holds at least `threshold` events (set by the API from its config). */
  sharding?: ShardingOptions;
  /** Set by the coordinator on each of its children (workflows/range-shards.ts); never by callers. */
  shard?: ShardAssignment;
  /** Carried across continue-as-new; never set by callers. */
  state?: RangeState;
}

/** When and how far a range replay is split (REPLAY_SHARD_THRESHOLD, REPLAY_SHARDS). */
export interface ShardingOptions {
  threshold: number;
  shards: number;
}

/**
 * The history a replay's workflow may hold before its operator controls (pause, resume, rate) are refused. The
 * coordinator of a sharded replay never continues as new, and Temporal terminates a workflow at 51,200 history
 * events; each control costs it at most 4 + 4 per child (72 with the most children), and the reports still to come
 * at most about 4,500 in a year of running (docs/integrity.md §5). Below this budget a control can never push it past
 * the limit; above it, cancel remains possible. An unsharded range replay continues as new and never gets near it.
 */
export const CONTROL_HISTORY_BUDGET = 45_000;

/** Which part of its parent's range a child replays, and for which replay. */
export interface ShardAssignment {
  index: number;
  of: number;
  /** The parent's workflow id: the replay id its events carry, and where its progress goes. */
  replayId: string;
  /** id: a contiguous id range (its state's cursor and maxId); key: the events of the keys hashed to `index`. */
  by: 'id' | 'key' | 'late_archive';
}

/** What a child reports to its coordinator (cumulative: the newest report replaces the one before). */
export interface ShardReport {
  index: number;
  published: number;
  failed: number;
  pages: number;
  cursor: number;
}

/** One child of a sharded range replay, as the coordinator's progress shows it. */
export interface ShardProgress {
  workflow_id: string;
  status: 'running' | 'paused' | 'completed';
  matched: number;
  published: number;
  failed: number;
  pages: number;
  /** The lowest id this child has not passed yet. */
  cursor: number;
  /** Since the replay started: the shares add up to the replay's rate. */
  eventsPerSecond: number;
  maxEventsPerSecond: number | null;
  /**
   * Set by GET /replays/:id when this running child did not answer its own progress query: its counts are then its
   * last report to the coordinator, which may be older (and lower) than what an earlier read showed.
   */
  stale?: boolean;
}

export interface RangeState {
  cursor: number;
  maxId: number;
  matched: number;
  published: number;
  failed: number;
  pages: number;
  startedAt: number;
  paused: boolean;
  maxEventsPerSecond: number | null;
  /** Events not replayed because their own topic is not an allowed target, by topic (absent in older runs). */
  refusedTopics?: Record<string, number>;
  /** Cold replay's passes over the archive (absent in runs started before cold replay). */
  archive?: ArchivePasses;
  /** Events the transform could not apply to, with the reason (the first few; counted in `failed`). */
  transformFailed?: RefusedEvent[];
}

/**
 * Where a range replay is in the archive: the segments it reads (pinned when planned, read before the journal; then,
 * once the journal pass is over, the late ones appended) and its position among them.
 */
export interface ArchivePasses {
  segments: string[];
  position: ArchivePosition;
  /** Segments whose rows the journal partly held when planned: looked at again after the journal pass. */
  deferred: string[];
  plannedAt: string;
  /** The journal pass is over and the late segments are appended: once they are read, the replay is done. */
  late: boolean;
}

export interface ReplayProgress {
  status: 'running' | 'paused' | (typeof WORKFLOW_END_STATUSES)[number];
  matched: number;
  published: number;
  failed: number;
  cursor: number;
  pages: number;
  eventsPerSecond: number;
  maxEventsPerSecond: number | null;
  /** A sharded replay's children (absent otherwise): `cursor` is then the lowest cursor of those still running. */
  shards?: ShardProgress[];
}

export type RangeReplayResult =
  | ({
      status: 'completed' | 'dry_run';
      workflow_id: string;
      refused_topics?: Record<string, number>;
      transform_failures?: RefusedEvent[];
    } & Omit<ReplayProgress, 'status'>)
  | ({ status: 'dry_run'; workflow_id: string } & RangeCountSummary);

export interface DlqRetryInput {
  source: ReplaySource;
  /** Retry exactly these entries now (POST /dlq/:id/retry), even when parked or not yet due. */
  entryIds?: number[];
  limit?: number;
  requestedBy?: string;
}

export interface DlqRetryResult {
  status: 'completed';
  workflow_id: string;
  attempted: number;
  resolved: number;
  retrying: number;
  parked: number;
  skipped: number;
}

/** A repair (edit-and-retry) of dead letters: journal/repair.ts, activities/dlq-repair.ts. Its id is the workflow id. */
export interface DlqRepairInput {
  /** The entries: a /dlq filter or a list of ids (pinned at the newest id that matches when the repair starts). */
  selection: DlqFilter;
  edit: RepairEdit;
  /** The requesting token's tenant: repaired events must belong to it. */
  tenantScope?: string;
  requestedBy: string;
  reason?: string;
  /** Entries per activity call (default 100). */
  pageSize?: number;
}

export interface DlqRepairResult extends Record<DlqRepairOutcome, number> {
  status: 'completed';
  repair_id: string;
  workflow_id: string;
}

/** Most entries one repair may select (the API refuses more); at 100 a page, 100 activity calls. */
export const MAX_REPAIR_ENTRIES = 10_000;

/** A bulk action on dead letters (POST /dlq/bulk): every entry of a filter, a page at a time. */
export interface DlqBulkInput {
  action: DlqBulkAction;
  /** Which entries; a tenant-scoped request carries its tenant here. */
  filter: DlqFilter;
  /** Why (required for discard; kept on each discarded entry and in the audit). */
  reason?: string;
  source: ReplaySource;
  requestedBy?: string;
  /** The tenant the request was scoped to (the audit row's tenant_id). */
  tenantScope?: string;
  /** Entries per page (default 200, at most MAX_DLQ_BULK_PAGE). */
  pageSize?: number;
  /** Pages before the workflow continues as new (default 100). */
  pagesPerRun?: number;
  /** Carried across continue-as-new; never set by callers. */
  state?: DlqBulkState;
}

/** Entries by what the action left them as (their new status), or skipped (moved by someone else meanwhile). */
export type DlqBulkCounts = Record<DlqStatus | 'skipped', number>;

export interface DlqBulkState {
  /** The newest entry the action may touch, pinned when it started (null: nothing matched). */
  maxId: number | null;
  /** Entries are taken in id order: the last id done. */
  cursor: number;
  /** Entries the plan found eligible. */
  matched: number;
  pages: number;
  counts: DlqBulkCounts;
}

export interface DlqBulkProgress {
  status: 'running' | (typeof WORKFLOW_END_STATUSES)[number];
  action: DlqBulkAction;
  matched: number;
  /** Entries handled so far (every count, skipped included). */
  done: number;
  cursor: number;
  pages: number;
  counts: DlqBulkCounts;
}

export type DlqBulkResult = Omit<DlqBulkProgress, 'status'> & { status: 'completed'; workflow_id: string };

/** Largest page of a bulk DLQ action. */
export const MAX_DLQ_BULK_PAGE = 1000;

export const dlqBulkProgressQuery = defineQuery<DlqBulkProgress>('dlqBulkProgress');
export const progressQuery = defineQuery<ReplayProgress>('progress');
export const pauseSignal = defineSignal('pause');
export const resumeSignal = defineSignal('resume');
/** New maximum events per second for a range replay; null removes the limit. */
export const setRateSignal = defineSignal<[number | null]>('setRate');
/** A child of a sharded range replay reports its progress to the coordinator. */
export const shardReportSignal = defineSignal<[ShardReport]>('shardReport');

/** Largest batch replay accepted. */
export const MAX_BATCH_IDS = 10_000;

/** A run of the journal maintenance workflow (docs/lifecycle.md). */
export interface MaintenanceInput {
  /** 'schedule' or 'operator' (POST /maintenance/run). */
  trigger: 'schedule' | 'operator';
  requestedBy?: string;
  /** Plan only: create partitions ahead, list what retention would archive and remove, remove nothing. */
  dryRun?: boolean;
}

export interface MaintenanceStepResult {
  action: 'drop_partition' | 'delete_rows';
  partition: string;
  topic?: string;
  segment: string | null;
  rows: number;
  applied: boolean;
}

export interface MaintenanceResult {
  status: 'completed';
  workflow_id: string;
  partitions_created: string[];
  steps: MaintenanceStepResult[];
  /** Dead letters deleted as past their topic's retention (absent from runs recorded before). */
  dead_letters_deleted?: number;
}

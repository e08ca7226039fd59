/**
 * Every closed list of kinds and statuses the service uses, defined once. TypeScript types derive from these
 * arrays; the SQL CHECK constraints that mirror them are compared with them by test/unit/kinds.test.ts.
 */

/** Why a consumed record went to event_dlq; also the `reason` label of crm_events_dlq_total. */
export const REJECT_REASONS = [
  'empty_value',
  'too_large',
  'invalid_utf8',
  'invalid_json',
  'not_object',
  'missing_tenant',
  'invalid_tenant',
  'db_error',
  'parse_error',
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

/** Reasons event_dlq.reason may hold: the reject reasons plus 'unknown', the default of rows written before reasons. */
export const DLQ_REASONS = [...REJECT_REASONS, 'unknown'] as const;

/** Where one consumed record ended: invariant 1 (consumed = journaled + dead_lettered + redelivered). */
export const RECORD_OUTCOMES = ['journaled', 'dead_lettered', 'redelivered'] as const;
export type RecordOutcome = (typeof RECORD_OUTCOMES)[number];

/**
 * Why this process's Kafka consumer was replaced by a fresh one (crm_events_ingest_consumer_restarts_total{reason}):
 * by the watchdog, because a partition it owns is stalled, or it owns none while the group has a stalled partition;
 * or because kafkajs crashed it with an error it does not retry, and would not have started it again.
 */
export const CONSUMER_RESTART_REASONS = ['stalled', 'unassigned', 'crashed'] as const;
export type ConsumerRestartReason = (typeof CONSUMER_RESTART_REASONS)[number];

/** Life of a dead letter; `discarded` is an operator's decision (with a reason): the row stays, nothing retries it. */
export const DLQ_STATUSES = ['pending', 'retrying', 'resolved', 'parked', 'discarded'] as const;
export type DlqStatus = (typeof DLQ_STATUSES)[number];

/** Dead letters that are not settled: what the retry schedule, park and discard may still act on. */
export const DLQ_OPEN_STATUSES = ['pending', 'retrying', 'parked'] as const satisfies readonly DlqStatus[];

/** What an operator can do to a set of dead letters at once (dlqBulkWorkflow). */
export const DLQ_BULK_ACTIONS = ['retry', 'discard', 'park', 'unpark'] as const;
export type DlqBulkAction = (typeof DLQ_BULK_ACTIONS)[number];

/** What one DLQ retry did to one entry. */
export const DLQ_RETRY_OUTCOMES = ['resolved', 'retrying', 'parked', 'skipped'] as const;
export type DlqRetryOutcome = (typeof DLQ_RETRY_OUTCOMES)[number];

/** dlq_repairs.status: a repair (edit-and-retry) of dead letters, from its start to its end. */
export const DLQ_REPAIR_STATUSES = ['running', 'completed', 'failed'] as const;
export type DlqRepairStatus = (typeof DLQ_REPAIR_STATUSES)[number];

/**
 * What a repair did to one entry (dlq_repair_entries.outcome): journaled, refused by validation (left untouched), or
 * skipped (already resolved or discarded, or gone).
 */
export const DLQ_REPAIR_OUTCOMES = ['journaled', 'invalid', 'skipped'] as const;
export type DlqRepairOutcome = (typeof DLQ_REPAIR_OUTCOMES)[number];

/** Kinds of workflow recorded in replay_audit. */
export const REPLAY_KINDS = ['single', 'batch', 'range', 'dlq_retry', 'dlq_bulk'] as const;
export type ReplayKind = (typeof REPLAY_KINDS)[number];

/** replay_audit.status. */
export const AUDIT_STATUSES = ['requested', 'running', 'completed', 'failed', 'cancelled'] as const;
export type AuditStatus = (typeof AUDIT_STATUSES)[number];

/** How a replay workflow ended (crm_events_replay_workflows_total{status}). */
export const WORKFLOW_END_STATUSES = ['completed', 'failed', 'cancelled'] as const;

/**
 * Failure types that no retry can fix: activities throw them non-retryable and workflows do not retry them.
 * `UnprocessableData`: Postgres refuses a statement for the data it reads (SQLSTATE class 22 or 54), given to any
 * activity's such error by the worker (worker/deterministic-failures.ts).
 */
export const PERMANENT_FAILURES = [
  'EventNotFound',
  'HopLimitExceeded',
  'InvalidRequest',
  'UnknownTopic',
  'EventErased',
  'TransformFailed',
  'UnprocessableData',
] as const;
export type PermanentFailure = (typeof PERMANENT_FAILURES)[number];

/** Payload fields a replay adds. */
export const REPLAY_LINEAGE_FIELDS = [
  '_replayed_from_event_id',
  '_replay_source',
  '_replay_id',
  '_replay_count',
  '_replay_transform',
] as const;

/** Payload fields a DLQ repair adds to the event it journals: the dead letter it repairs and the repair (patch) id. */
export const REPAIR_LINEAGE_FIELDS = ['_repaired_from_dlq_id', '_repair_id'] as const;

/**
 * Every lineage field this service writes. A replayed event's own old lineage is replaced, never nested (a replay of a
 * repaired event points at it, and it at its dead letter); no request may write them (a repair's patch is refused).
 */
export const LINEAGE_FIELDS = [...REPLAY_LINEAGE_FIELDS, ...REPAIR_LINEAGE_FIELDS] as const;

/**
 * How a batch or range replay orders what it sends. `per_key`: events with the same Kafka key reach the target in
 * journal order, across retries, pauses and continue-as-new (docs/integrity.md, "Per-key ordering"); the default
 * sends each page at once, and a page retried after a partial send may repeat older events after newer ones.
 */
export const REPLAY_ORDERINGS = ['page', 'per_key'] as const;
export type ReplayOrdering = (typeof REPLAY_ORDERINGS)[number];

/**
 * Why a replay leaves an event of a page out (activities/replay-messages.ts preparePage): past the hop limit
 * (REPLAY_MAX_HOPS), its own topic not an allowed target (REPLAY_TARGET_TOPICS), or the transform not applying.
 */
export const REFUSAL_KINDS = ['hops', 'topic', 'transform'] as const;
export type RefusalKind = (typeof REFUSAL_KINDS)[number];

/** Ids of a page refused, by why. */
export type RefusedIds = Partial<Record<RefusalKind, number[]>>;

/**
 * What a per_key send decided about ids of a page, kept with its progress (send_progress_sent.kind): sent, or refused
 * of a kind. A retry keeps both decisions rather than making them again (docs/integrity.md section 9).
 */
export const SEND_DECISIONS = ['sent', ...REFUSAL_KINDS] as const;
export type SendDecision = (typeof SEND_DECISIONS)[number];

/**
 * Most child workflows one range replay is split into (REPLAY_SHARDS is capped to it): bounds the children and every
 * signal fan-out of their coordinator (workflows/range-shards.ts). Here because config and workflows both read it.
 */
export const MAX_REPLAY_SHARDS = 16;

/** Kinds of workflow recorded in lifecycle_audit (journal maintenance, erasure). */
export const LIFECYCLE_KINDS = ['maintenance', 'erasure'] as const;
export type LifecycleKind = (typeof LIFECYCLE_KINDS)[number];

/** lifecycle_audit.status. */
export const LIFECYCLE_STATUSES = ['running', 'completed', 'failed'] as const;
export type LifecycleStatus = (typeof LIFECYCLE_STATUSES)[number];

/** What one maintenance step did (lifecycle_audit.actions[].action). */
export const MAINTENANCE_ACTIONS = [
  'partition_created',
  'segment_archived',
  'segment_withdrawn',
  'partition_dropped',
  'rows_deleted',
  'dead_letters_deleted',
  'removed_records_pruned',
] as const;
export type MaintenanceAction = (typeof MAINTENANCE_ACTIONS)[number];

/** Payload fields the ApexFlow producers put the tenant in, in order of preference. */
export const TENANT_FIELDS = ['tenant_id', 'tenantId', 'TenantId'] as const;

/** What an erasure selects: a tenant's rows (offboarding) or a data subject's (a value of a payload field). */
export const ERASURE_TARGETS = ['tenant', 'subject'] as const;
export type ErasureTargetKind = (typeof ERASURE_TARGETS)[number];

/** Where an erasure deletes rows; erasure_counts.store and the keys of an erasure's counts. */
export const ERASURE_STORES = ['journal', 'dlq', 'archive'] as const;
export type ErasureStore = (typeof ERASURE_STORES)[number];

/** What removed a row whose Kafka record may still be delivered again (removed_records.removed_by). */
export const REMOVERS = ['retention', 'erasure'] as const;
export type Remover = (typeof REMOVERS)[number];

/**
 * What an operational webhook tells (docs/notifications.md): a dead letter parked after its last retry, dead letters
 * of one reason and topic arriving over a threshold, a replay (single, batch, range; not a DLQ retry run, not a dry
 * run) ended, an erasure completed.
 */
export const NOTIFICATION_KINDS = [
  'dlq_parked',
  'dlq_group_growing',
  'replay_completed',
  'replay_failed',
  'erasure_completed',
] as const;
export type NotificationKind = (typeof NOTIFICATION_KINDS)[number];

/** One delivery attempt (notification_deliveries.status): delivered, failed (retried later), abandoned (the last). */
export const NOTIFICATION_DELIVERY_STATUSES = ['delivered', 'failed', 'abandoned'] as const;
export type NotificationDeliveryStatus = (typeof NOTIFICATION_DELIVERY_STATUSES)[number];

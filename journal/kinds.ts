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

/** Life of a dead letter. */
export const DLQ_STATUSES = ['pending', 'retrying', 'resolved', 'parked'] as const;
export type DlqStatus = (typeof DLQ_STATUSES)[number];

/** What one DLQ retry did to one entry. */
export const DLQ_RETRY_OUTCOMES = ['resolved', 'retrying', 'parked', 'skipped'] as const;
export type DlqRetryOutcome = (typeof DLQ_RETRY_OUTCOMES)[number];

/** Kinds of workflow recorded in replay_audit. */
export const REPLAY_KINDS = ['single', 'batch', 'range', 'dlq_retry'] as const;
export type ReplayKind = (typeof REPLAY_KINDS)[number];

/** replay_audit.status. */
export const AUDIT_STATUSES = ['requested', 'running', 'completed', 'failed', 'cancelled'] as const;
export type AuditStatus = (typeof AUDIT_STATUSES)[number];

/** How a replay workflow ended (crm_events_replay_workflows_total{status}). */
export const WORKFLOW_END_STATUSES = ['completed', 'failed', 'cancelled'] as const;

/** Failure types that no retry can fix: activities throw them non-retryable and workflows do not retry them. */
export const PERMANENT_FAILURES = [
  'EventNotFound',
  'HopLimitExceeded',
  'InvalidRequest',
  'UnknownTopic',
  'EventErased',
  'TransformFailed',
] as const;
export type PermanentFailure = (typeof PERMANENT_FAILURES)[number];

/** Payload fields a replay adds; a replayed event's own old lineage is replaced, never nested. */
export const LINEAGE_FIELDS = [
  '_replayed_from_event_id',
  '_replay_source',
  '_replay_id',
  '_replay_count',
  '_replay_transform',
] as const;

/**
 * How a batch or range replay orders what it sends. `per_key`: events with the same Kafka key reach the target in
 * journal order, across retries, pauses and continue-as-new (docs/integrity.md, "Per-key ordering"); the default
 * sends each page at once, and a page retried after a partial send may repeat older events after newer ones.
 */
export const REPLAY_ORDERINGS = ['page', 'per_key'] as const;
export type ReplayOrdering = (typeof REPLAY_ORDERINGS)[number];

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
  'partition_dropped',
  'rows_deleted',
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

-- Up Migration
-- DLQ triage (issue 13, point 1): error classes, bulk actions, the discarded status.

-- The dead letter's error class: a stable fingerprint of its reason and normalised error (journal/error-class.ts
-- errorClassOf, the one place it is computed). Ingest writes it with each new dead letter; rows written before this
-- migration are classified by the online step that runs after the migrations, under their lock
-- (lifecycle/prepare.ts: classifyDeadLetters), in pages, so the column stays NULL only until the next migrate/start.
ALTER TABLE event_dlq
  ADD COLUMN error_class    text,
  -- The last bulk action (replay_audit.workflow_id of a dlqBulkWorkflow) that acted on the entry: a page retried after
  -- a crash skips the entries it already did, so each entry is acted on once per bulk action.
  ADD COLUMN bulk_action_id text,
  -- Why an operator discarded the entry (required by the API); who and when are in the bulk action's audit row.
  ADD COLUMN discard_reason text;

-- Grouping by class x topic x day, and the error_class filter of GET /dlq and of bulk actions.
CREATE INDEX idx_event_dlq_error_class ON event_dlq (error_class, topic, received_at);

-- 'discarded': settled by an operator, never retried again. Statuses: journal/kinds.ts DLQ_STATUSES.
ALTER TABLE event_dlq DROP CONSTRAINT event_dlq_status_check;
ALTER TABLE event_dlq ADD CONSTRAINT event_dlq_status_check
  CHECK (status IN ('pending', 'retrying', 'resolved', 'parked', 'discarded'));

-- Bulk DLQ actions are audited like replays (who, what filter, how it ended). Kinds: journal/kinds.ts REPLAY_KINDS.
ALTER TABLE replay_audit DROP CONSTRAINT replay_audit_kind_check;
ALTER TABLE replay_audit ADD CONSTRAINT replay_audit_kind_check
  CHECK (kind IN ('single', 'batch', 'range', 'dlq_retry', 'dlq_bulk'));

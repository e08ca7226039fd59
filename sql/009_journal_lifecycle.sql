-- Up Migration
-- Journal lifecycle (docs/lifecycle.md). event_journal becomes a time-partitioned table right after the SQL
-- migrations (lifecycle/convert.ts: online, no row copied). A foreign key cannot point into a partitioned table
-- without the partition key in its target, so event_dlq.resolved_event_id becomes a plain reference (it is written
-- by the DLQ retry with the id it just journaled, and survives that row's retention as history).
ALTER TABLE event_dlq DROP CONSTRAINT IF EXISTS event_dlq_resolved_event_id_fkey;

-- Retention per topic, set with PUT /retention (admin). '*' is every topic without a row of its own. keep_days NULL:
-- kept forever. JOURNAL_RETENTION gives the values used until a row here overrides them.
CREATE TABLE retention_policies (
  topic      text PRIMARY KEY,
  keep_days  integer CHECK (keep_days IS NULL OR keep_days >= 1),
  updated_by text        NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- What the lifecycle workflows did (maintenance: partitions created, segments archived, partitions dropped, rows
-- deleted; erasure: counts per store). Holds no personal data: an erasure's subject is kept only as a salted hash.
-- Kinds and statuses: journal/kinds.ts LIFECYCLE_KINDS, LIFECYCLE_STATUSES.
CREATE TABLE lifecycle_audit (
  id           bigserial PRIMARY KEY,
  workflow_id  text        NOT NULL UNIQUE,
  kind         text        NOT NULL CHECK (kind IN ('maintenance', 'erasure')),
  requested_by text,
  status       text        NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'completed', 'failed')),
  request      jsonb       NOT NULL DEFAULT '{}'::jsonb,
  actions      jsonb       NOT NULL DEFAULT '[]'::jsonb,
  error        text,
  started_at   timestamptz NOT NULL DEFAULT now(),
  finished_at  timestamptz
);
CREATE INDEX idx_lifecycle_audit_kind ON lifecycle_audit (kind, id DESC);

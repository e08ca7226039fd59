-- Up Migration
-- One row per replay or DLQ-retry workflow: who asked for what, and how it ended.
CREATE TABLE replay_audit (
  id            bigserial PRIMARY KEY,
  workflow_id   text        NOT NULL UNIQUE,
  run_id        text,
  kind          text        NOT NULL CHECK (kind IN ('single', 'batch', 'range', 'dlq_retry')),
  source        text        NOT NULL,
  requested_by  text,
  tenant_id     text,                 -- the tenant the request was scoped to, if any
  event_id      bigint,               -- single replays
  filter        jsonb       NOT NULL DEFAULT '{}'::jsonb,
  status        text        NOT NULL DEFAULT 'requested'
                CHECK (status IN ('requested', 'running', 'completed', 'failed', 'cancelled')),
  matched       integer     NOT NULL DEFAULT 0,
  published     integer     NOT NULL DEFAULT 0,
  failed        integer     NOT NULL DEFAULT 0,
  error         text,
  created_at    timestamptz NOT NULL DEFAULT now(),
  finished_at   timestamptz
);
CREATE INDEX idx_replay_audit_created ON replay_audit (created_at DESC, id DESC);
CREATE INDEX idx_replay_audit_kind_status ON replay_audit (kind, status, id DESC);

-- A replay is journaled once per (replay, source event) even if an activity retry republishes it:
-- the consumer's ON CONFLICT DO NOTHING also covers this index.
CREATE UNIQUE INDEX event_journal_replay_once
  ON event_journal ((payload->>'_replay_id'), (payload->>'_replayed_from_event_id'))
  WHERE replay_count > 0 AND payload ? '_replay_id';

-- Up Migration
-- DLQ repair (edit-and-retry): a JSON Patch or a replacement value applied to dead letters, whose fixed records are
-- journaled with lineage to the dead letter (_repaired_from_dlq_id, _repair_id). The dead letter keeps its raw bytes;
-- these two tables are the audit: what was applied, by whom, and what became of each entry.
CREATE TABLE dlq_repairs (
  id           text        PRIMARY KEY,            -- the repair (patch) id: its workflow id, the events' _repair_id
  requested_by text        NOT NULL,
  tenant_id    text,                               -- the requesting token's tenant scope (NULL: unscoped)
  edit         jsonb       NOT NULL,               -- {"patch": [...]} or {"value": {...}}
  selection    jsonb       NOT NULL,               -- {"ids": [...]} or a /dlq filter
  reason       text,
  status       text        NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'completed', 'failed')),
  error        text,
  created_at   timestamptz NOT NULL DEFAULT now(),
  finished_at  timestamptz
);
CREATE INDEX idx_dlq_repairs_created ON dlq_repairs (created_at DESC);

-- One row per entry a repair looked at, written in the same transaction as what it did to the entry: an activity
-- retried after a crash finds the entry resolved and its outcome recorded, and writes neither again. Ids only (no
-- payload): an erasure of the dead letter leaves nothing personal here.
CREATE TABLE dlq_repair_entries (
  repair_id  text        NOT NULL REFERENCES dlq_repairs (id),
  dlq_id     bigint      NOT NULL,
  outcome    text        NOT NULL CHECK (outcome IN ('journaled', 'invalid', 'skipped')),
  journal_id bigint,
  error      text,
  at         timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (repair_id, dlq_id)
);

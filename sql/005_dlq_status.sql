-- Up Migration
-- DLQ retry state. Rows are still never deleted: a resolved entry keeps its row, with the journal id it produced.
ALTER TABLE event_dlq
  ADD COLUMN status            text        NOT NULL DEFAULT 'pending'
             CHECK (status IN ('pending', 'retrying', 'resolved', 'parked')),
  ADD COLUMN attempts          integer     NOT NULL DEFAULT 0,
  ADD COLUMN last_error        text,
  ADD COLUMN next_attempt_at   timestamptz NOT NULL DEFAULT now(),
  ADD COLUMN resolved_at       timestamptz,
  ADD COLUMN resolved_event_id bigint REFERENCES event_journal (id);

CREATE INDEX idx_event_dlq_due ON event_dlq (next_attempt_at, id) WHERE status IN ('pending', 'retrying');
CREATE INDEX idx_event_dlq_status ON event_dlq (status, id DESC);

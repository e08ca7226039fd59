-- Up Migration
-- Dead letters: records the sink could not journal, with the reason. Append-only: rows are never deleted.
CREATE TABLE event_dlq (
  id              bigserial PRIMARY KEY,
  topic           text        NOT NULL,
  tenant_id       text,
  payload         jsonb,               -- the record's JSON when it parsed as JSON
  raw_value       text,                -- the record as received when it did not (base64: prefix if not UTF-8)
  error           text        NOT NULL,
  reason          text        NOT NULL DEFAULT 'unknown',
  kafka_partition integer,
  kafka_offset    bigint,
  kafka_key       text,
  received_at     timestamptz NOT NULL DEFAULT now()
);

-- A redelivered poison record lands in the DLQ once, like the journal.
CREATE UNIQUE INDEX event_dlq_kafka_coordinates_key ON event_dlq (topic, kafka_partition, kafka_offset);
CREATE INDEX idx_event_dlq_received ON event_dlq (received_at DESC);

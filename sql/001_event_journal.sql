-- Up Migration
-- The journal: every CRM domain event ever consumed, original or replayed. Source of truth for replay.
CREATE TABLE event_journal (
  id              bigserial PRIMARY KEY,
  tenant_id       text        NOT NULL,
  topic           text        NOT NULL,
  payload         jsonb       NOT NULL,
  received_at     timestamptz NOT NULL DEFAULT now(),
  kafka_partition integer,
  kafka_offset    bigint,
  kafka_key       text
);

-- A redelivered Kafka record (consumer restart, rebalance, crash before commit) is never journaled twice.
CREATE UNIQUE INDEX event_journal_kafka_coordinates_key
  ON event_journal (topic, kafka_partition, kafka_offset);

-- Access paths: tenant + time and topic + time (API filters, seed queries); "latest by id" is the primary key.
CREATE INDEX idx_event_journal_tenant_received ON event_journal (tenant_id, received_at DESC, id DESC);
CREATE INDEX idx_event_journal_topic_received ON event_journal (topic, received_at DESC, id DESC);
CREATE INDEX idx_event_journal_received ON event_journal (received_at, id);

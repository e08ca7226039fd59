-- Up Migration
-- Kafka records whose rows retention or an erasure removed while Kafka may still deliver them again (a consumer group
-- reset, a rebalance in the uncommitted window): redelivery dedupe (journal/redelivery.ts) looks here as well as in
-- the journal and the DLQ, so that a removed record is never journaled, or dead-lettered, a second time
-- (docs/lifecycle.md, "Redeliveries of removed records"). Coordinates and a keyed hash only: record_hash is
-- SHA-256(the erasure salt || content_hash), so that no one without the salt can test a guessed record against it.
-- Rows received before the redelivery horizon (KAFKA_REDELIVERY_HORIZON) are not kept: Kafka no longer holds them.
CREATE TABLE removed_records (
  topic           text        NOT NULL,
  kafka_partition integer     NOT NULL,
  kafka_offset    bigint      NOT NULL,
  record_hash     bytea       NOT NULL,
  removed_by      text        NOT NULL CHECK (removed_by IN ('retention', 'erasure')),
  received_at     timestamptz NOT NULL,
  removed_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_removed_records_coordinates ON removed_records (topic, kafka_partition, kafka_offset);
CREATE INDEX idx_removed_records_received ON removed_records (received_at);

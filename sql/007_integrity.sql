-- Up Migration
-- Integrity (docs/integrity.md). What a record was, exactly, as consumed: key bytes, headers, record timestamp, and a
-- content hash. The hash joins the Kafka coordinates in the unique key, so that a record at coordinates already used
-- by a different record (topic re-created, cluster moved) is journaled instead of being dropped as a "duplicate",
-- while a redelivery of the same record (same coordinates, same hash) still is not.
ALTER TABLE event_journal
  ADD COLUMN kafka_key_bytes bytea,
  ADD COLUMN kafka_headers   jsonb,        -- [[name, value base64 | null], ...] in record order
  ADD COLUMN kafka_timestamp timestamptz,  -- the record's own timestamp (CreateTime or LogAppendTime)
  ADD COLUMN content_hash    bytea;        -- sha256 of key, value, timestamp and headers; NULL on rows from before 007

DROP INDEX event_journal_kafka_coordinates_key;
CREATE UNIQUE INDEX event_journal_kafka_record_key
  ON event_journal (topic, kafka_partition, kafka_offset, content_hash);

ALTER TABLE event_dlq
  ADD COLUMN raw_bytes       bytea,        -- the value exactly as consumed (NULL for a tombstone)
  ADD COLUMN kafka_key_bytes bytea,
  ADD COLUMN kafka_headers   jsonb,
  ADD COLUMN kafka_timestamp timestamptz,
  ADD COLUMN content_hash    bytea;

DROP INDEX event_dlq_kafka_coordinates_key;
CREATE UNIQUE INDEX event_dlq_kafka_record_key ON event_dlq (topic, kafka_partition, kafka_offset, content_hash);

-- Reasons are a closed list (journal/kinds.ts DLQ_REASONS; test/unit/kinds.test.ts compares the two).
ALTER TABLE event_dlq ADD CONSTRAINT event_dlq_reason_check CHECK (reason IN (
  'empty_value', 'too_large', 'invalid_utf8', 'invalid_json', 'not_object', 'missing_tenant', 'invalid_tenant',
  'db_error', 'parse_error', 'unknown'));

-- Secrets the service generates for itself. 'lineage' signs the lineage of replayed records (x-replay-proof), so that
-- lineage fields in a record produced by anyone else are ordinary payload. LINEAGE_KEY overrides it.
CREATE TABLE service_keys (
  name       text PRIMARY KEY,
  secret     bytea       NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO service_keys (name, secret)
VALUES ('lineage', decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'));

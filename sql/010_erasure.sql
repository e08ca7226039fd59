-- Up Migration
-- Erasure (GDPR/CCPA; docs/lifecycle.md, "Erasure"). Journal ids an erasure deleted, so that a replay or a read of one
-- answers 410 with the erasure's id instead of 404. Ids only: no personal data.
CREATE TABLE erased_events (
  event_id   bigint      PRIMARY KEY,
  erasure_id text        NOT NULL,
  erased_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_erased_events_erasure ON erased_events (erasure_id);

-- The subject of an erasure that has not finished yet, keyed by its salted hash: the API writes it, the workflow's
-- activities read it, and the workflow deletes it when it ends. The value is kept out of the workflow's input, so
-- that Temporal's history of the erasure never holds it.
CREATE TABLE erasure_subjects (
  subject_hash text        PRIMARY KEY,
  target       jsonb       NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now()
);

-- The salt of subject hashes (HMAC-SHA256 key), per installation, like 007's lineage key.
INSERT INTO service_keys (name, secret)
VALUES ('erasure', decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'))
ON CONFLICT (name) DO NOTHING;

-- Rows each erasure deleted, per store, counted in the same transaction as each delete: an activity retried after a
-- crash counts on from there instead of counting twice or losing a batch. Stores: journal/kinds.ts ERASURE_STORES.
CREATE TABLE erasure_counts (
  erasure_id text   NOT NULL,
  store      text   NOT NULL CHECK (store IN ('journal', 'dlq', 'archive')),
  rows       bigint NOT NULL DEFAULT 0,
  segments   integer NOT NULL DEFAULT 0,
  PRIMARY KEY (erasure_id, store)
);

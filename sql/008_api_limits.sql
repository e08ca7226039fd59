-- Up Migration
-- State the API's limits share across instances: N API processes on one database allow one budget, not N.

-- Replay rate limit: one row per caller (token subject or client address), the times of its requests in the last
-- minute. One row per caller lets a single INSERT … ON CONFLICT DO UPDATE check and count atomically (the row lock
-- serialises two instances), and keeps the table as small as the set of recent callers once pruned.
CREATE TABLE api_rate_limit (
  caller   text          PRIMARY KEY,
  hits     timestamptz[] NOT NULL,
  last_hit timestamptz   NOT NULL
);
CREATE INDEX api_rate_limit_last_hit ON api_rate_limit (last_hit);

-- Idempotency-Key: which workflow a (caller, route, key) started and what the request asked for. Pruned after the
-- key's time to live; a key reused after that starts a new workflow.
CREATE TABLE api_idempotency_keys (
  key_hash    text        PRIMARY KEY,  -- sha256 of caller, route and key: the key itself is the caller's text
  workflow_id text        NOT NULL,
  fingerprint text        NOT NULL,     -- sha256 of the request's input
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_idempotency_keys_created_at ON api_idempotency_keys (created_at);


-- Up Migration
-- The holders of a barrier (shared/barrier.ts; the replay sends' barrier with erasures, repository/erasure.ts): a
-- holder (a replay page) commits a row here before it checks its ids against erased_events, renews its lease while
-- its send goes on, and deletes the row once the send has ended; an erasure, once its ids are recorded, waits until
-- none of the rows unexpired at that moment is left unexpired. Rows, not a session lock: a session can end while the
-- send it guarded goes on (a Postgres restart or failover, a connection reset).
CREATE TABLE barrier_holders (
  id          uuid        PRIMARY KEY,
  name        text        NOT NULL,
  holder      text        NOT NULL,
  session_pid integer     NOT NULL,
  started_at  timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz NOT NULL
);
CREATE INDEX idx_barrier_holders_name ON barrier_holders (name, expires_at);

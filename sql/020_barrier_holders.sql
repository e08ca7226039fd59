-- Up Migration
-- The holders of a barrier (shared/db.ts withSharedLock / awaitSharedHolders; the replay sends' barrier with erasures,
-- repository/erasure.ts). The barrier's advisory lock goes with its holder's session, and a session can end while the
-- work it guards goes on (Postgres restarted or failed over, a connection reset): a holder also commits a row here
-- before it takes the lock, renews its lease while it holds, and deletes the row once its work has ended. A barrier
-- waits for the lock and then for the rows that were here when it was called, until deleted or expired.
CREATE TABLE barrier_holders (
  id         bigserial   PRIMARY KEY,
  name       text        NOT NULL,
  holder     text        NOT NULL,
  started_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL
);
CREATE INDEX idx_barrier_holders_name ON barrier_holders (name, expires_at);

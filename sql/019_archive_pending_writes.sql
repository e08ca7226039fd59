-- Up Migration
-- An archive rewrite's new file between its write and the settling of its manifest switch: recorded before the file is
-- written, forgotten once the manifest names it or the file is deleted. A rewrite that fails there (its switch and the
-- manifest's re-read in one store outage, a put whose answer was lost, a process killed) leaves its row, and the next
-- archive pass deletes the file once its switch can no longer land (the segment gone, or its manifest no longer the
-- version the switch compared): no rewritten file, holding other subjects' rows, stays outside every later pass.
CREATE TABLE archive_pending_writes (
  object_key       text        PRIMARY KEY,
  segment          text        NOT NULL,
  compared_version text        NOT NULL,
  recorded_at      timestamptz NOT NULL DEFAULT now()
);

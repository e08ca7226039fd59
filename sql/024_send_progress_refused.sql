-- Up Migration
-- What a per_key send decided about each event of its page, not only what it sent (docs/integrity.md section 9): an
-- event refused by one attempt (past REPLAY_MAX_HOPS, its own topic not an allowed target, the transform not
-- applying) must not be sent by a retry that would decide otherwise (a worker of another config) after a newer event
-- of its key. send_progress_sent's rows now say which decision their ids are: 'sent' (every row before this
-- migration), or the refusal's kind (journal/kinds.ts SEND_DECISIONS). Ids only, as before: never a reason, which may
-- describe a payload. A retry on a worker of the previous version reads the refused ids as sent when it resumes from
-- the row, and sends none of them (only its counts differ); when it resumes from a heartbeat ahead of the row, it
-- decides them again under its own config (docs/operations.md, the sql/024 rollout note).
ALTER TABLE send_progress_sent
  ADD COLUMN kind text NOT NULL DEFAULT 'sent' CHECK (kind IN ('sent', 'hops', 'topic', 'transform'));

-- Up Migration
-- Replay tracking (Phase 5++): 0 = original event, n > 0 = replayed n hops from an original.
-- Existing rows read as originals through the default.
ALTER TABLE event_journal
  ADD COLUMN replay_count integer NOT NULL DEFAULT 0,
  ADD COLUMN replay_source text DEFAULT NULL;

CREATE INDEX idx_event_journal_replay_count ON event_journal (replay_count);

-- Lineage lookups ("what were the replays of event 42?") go through the payload marker.
CREATE INDEX idx_event_journal_replayed_from
  ON event_journal ((payload->>'_replayed_from_event_id'))
  WHERE replay_count > 0;

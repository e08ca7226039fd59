-- Up Migration
-- The progress of a per_key replay activity (activities/ordered-publish.ts, repository/send-progress.ts): written
-- before each wave of events is sent, so that a retry resumes at most one wave back whatever its heartbeats reached
-- the server (a heartbeat is recorded up to a second later, or never when the worker dies or is cut off from Temporal).
-- One row per activity (its workflow run and activity id), written by attempt number: an attempt never overwrites a
-- later attempt's row. Rows of an activity whose workflow has moved on are deleted by its next per_key activity, rows
-- not written for a week by any attempt's first write.
CREATE TABLE send_progress (
  workflow_id text        NOT NULL,
  run_id      text        NOT NULL,
  activity_id text        NOT NULL,
  attempt     integer     NOT NULL,
  details     jsonb       NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (run_id, activity_id)
);
CREATE INDEX idx_send_progress_workflow ON send_progress (workflow_id);
CREATE INDEX idx_send_progress_updated ON send_progress (updated_at);

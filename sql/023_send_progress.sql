-- Up Migration
-- The progress of a per_key replay activity (activities/ordered-publish.ts durableProgress, repository/send-progress.ts),
-- made durable before each wave of events is sent, so that a retry resumes at most one wave back whatever its
-- heartbeats reached the server (a heartbeat is recorded up to a second later, or never when the worker dies or is cut
-- off from Temporal).
--
-- send_progress: one row per activity (its workflow run and activity id), claimed by each attempt as it resumes: the
-- page it is in (-1 before its first page write) and its progress besides the ids sent (no refusal reasons: they may
-- describe a payload). `fence` is the claiming attempt's scheduled time (ms, the server's): a later attempt, or the
-- first after an activity reset, has a later one, and an earlier attempt's statements change nothing once it has
-- claimed. `closed`: a later activity of the workflow has claimed, this one is over (emptied, kept as a fence). Rows
-- closed a week ago, and open rows unclaimed for 30 days, are deleted.
CREATE TABLE send_progress (
  run_id      text        NOT NULL,
  activity_id text        NOT NULL,
  workflow_id text        NOT NULL,
  fence       bigint      NOT NULL,
  page        integer     NOT NULL,
  details     jsonb       NOT NULL,
  closed      boolean     NOT NULL DEFAULT false,
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (run_id, activity_id)
);
CREATE INDEX idx_send_progress_workflow ON send_progress (workflow_id);
CREATE INDEX idx_send_progress_updated ON send_progress (updated_at);

-- The ids of the activity's current page sent so far, a row per wave (only the wave's ids: a write costs the wave, not
-- the page); rows of other pages are deleted as a page begins.
CREATE TABLE send_progress_sent (
  run_id      text     NOT NULL,
  activity_id text     NOT NULL,
  page        integer  NOT NULL,
  ids         bigint[] NOT NULL,
  FOREIGN KEY (run_id, activity_id) REFERENCES send_progress (run_id, activity_id) ON DELETE CASCADE
);
CREATE INDEX idx_send_progress_sent ON send_progress_sent (run_id, activity_id, page);

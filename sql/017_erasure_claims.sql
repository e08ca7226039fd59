-- Up Migration
-- The erasure workflows a stored subject (erasure_subjects) is kept for: one row per workflow, written with the
-- subject before the API starts the workflow. Released when the workflow ends, when its start was refused, or by the
-- API's prune once Temporal shows the workflow is not running (a start that never reached it, a request sent again
-- for an erasure already finished). A subject is deleted once no claim names it, so a request refused for one
-- erasure never deletes the value another, accepted, erasure of the same subject still needs.
CREATE TABLE erasure_subject_claims (
  workflow_id  text        PRIMARY KEY,
  subject_hash text        NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_erasure_subject_claims_subject ON erasure_subject_claims (subject_hash);

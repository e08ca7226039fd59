-- Up Migration
-- A claim on a stored subject per request, not per workflow (017 had one row per workflow): a request sent again with
-- its Idempotency-Key, to this API or another, names the workflow a first one claimed, and a first request refused
-- later (its Temporal unreachable) released that shared row, and with it the value the resend's accepted erasure
-- needed. Each request now inserts a claim of its own, under a token it alone releases when its start was refused;
-- the workflow's end and the API's prune release every claim of the workflow, as before. Rows already there become
-- the claims of their workflows' first requests.
ALTER TABLE erasure_subject_claims ADD COLUMN claim_id uuid NOT NULL DEFAULT gen_random_uuid();
ALTER TABLE erasure_subject_claims DROP CONSTRAINT erasure_subject_claims_pkey;
ALTER TABLE erasure_subject_claims ADD PRIMARY KEY (claim_id);
CREATE INDEX idx_erasure_subject_claims_workflow ON erasure_subject_claims (workflow_id);

-- Up Migration
-- When an erasure's wait claimed an expired holder row to fence its scope (shared/barrier.ts). A claimed row is not
-- renewed any more, and its holder's guard (run by the replay producer once a send's transactional epoch is fixed,
-- before it produces) refuses the send: a send that passed its guard began before the claim, so before the fence,
-- which supersedes its epoch. NULL: not claimed.
ALTER TABLE barrier_holders ADD COLUMN claimed_at timestamptz;

-- Up Migration
-- What a holder's process must have fenced once the holder is gone (shared/barrier.ts): a replay page's producer
-- scope (shared/kafka.ts fenceScope). A holder whose lease ran out may have left a send in a broker (a frozen broker
-- appends what its socket holds when it runs again); an erasure's wait fences the scope's transactional ids (their
-- open transactions aborted, later requests of them refused) and only then deletes the row. NULL: nothing to fence.
ALTER TABLE barrier_holders ADD COLUMN fence text;

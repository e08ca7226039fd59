import { MockActivityEnvironment } from '@temporalio/testing';
import { createMaintenanceActivities } from '../../activities/maintenance';
import { putRetentionRows } from '../../repository/retention';
import { seedOldDeadLetters } from '../support/journal';
import { createSinkHarness, type SinkHarness } from '../support/sink';
import { activityDeps } from '../support/temporal';

/**
 * Invariant 4 (docs/lifecycle.md, section 2): maintenance is idempotent under activity retries, and lifecycle_audit
 * records what it did. expireDeadLetters commits each batch of 5,000 on its own but records the topic's
 * `dead_letters_deleted` once, after its last batch, from a count held in memory: an attempt that fails after some
 * batches (a worker restart, Postgres failing over) leaves those deletions unrecorded, and the retry counts only what
 * is left. The erasure counts its deletes in the same transaction as each delete (erasure_counts) for this reason.
 */
let h: SinkHarness;
beforeAll(async () => {
  h = await createSinkHarness('attack5-dlq-retry-count');
});
afterAll(() => h?.close());

it('dead letters deleted by an attempt that then failed are counted in the audit after the retry', async () => {
  const topic = h.topics.leads;
  await seedOldDeadLetters(h.pool, topic, 6000, 25);
  await putRetentionRows(h.pool, { [topic]: 10 }, 'attack5');
  const workflowId = 'attack5-dlq-retry';
  const activities = createMaintenanceActivities(activityDeps(h));
  const env = new MockActivityEnvironment();
  await env.run(() => activities.maintenanceStarted({ workflowId, request: {} }));

  // The first attempt fails on its second batch (Postgres refusing it, as a failover would).
  await h.pool.query(`
    CREATE FUNCTION attack5_fail_second_batch() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF OLD.kafka_offset > 5000 THEN RAISE EXCEPTION 'attack5: connection lost'; END IF;
      RETURN OLD;
    END $$;
    CREATE TRIGGER attack5_fail_second_batch BEFORE DELETE ON event_dlq
      FOR EACH ROW EXECUTE FUNCTION attack5_fail_second_batch();`);
  await expect(env.run(() => activities.expireDeadLetters({ workflowId, now: Date.now() }))).rejects.toThrow(
    'attack5: connection lost',
  );
  await h.pool.query('DROP TRIGGER attack5_fail_second_batch ON event_dlq');

  // Temporal retries the activity.
  await env.run(() => activities.expireDeadLetters({ workflowId, now: Date.now() }));
  const left = await h.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM event_dlq WHERE topic = $1', [topic]);
  expect(left.rows[0].n).toBe(0);

  const { rows } = await h.pool.query<{ rows: number }>(
    `SELECT coalesce(sum((a->>'rows')::int), 0)::int AS rows
       FROM lifecycle_audit, jsonb_array_elements(actions) a
      WHERE workflow_id = $1 AND a->>'action' = 'dead_letters_deleted'`,
    [workflowId],
  );
  expect(rows[0].rows).toBe(6000); // fails: 1000, the first attempt's 5,000 deletions are not recorded
});

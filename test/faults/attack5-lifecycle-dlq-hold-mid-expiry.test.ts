import { MockActivityEnvironment } from '@temporalio/testing';
import { createMaintenanceActivities } from '../../activities/maintenance';
import { putRetentionRows } from '../../repository/retention';
import { seedOldDeadLetters } from '../support/journal';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';
import { activityDeps } from '../support/temporal';

/**
 * Invariant 2 (docs/lifecycle.md, section 2): nothing within retention is removed, and a policy changed during a run
 * (PUT /retention to keep a topic forever: a legal hold) takes effect before anything more is removed. The journal's
 * steps re-check the policies in force before each removal; expireDeadLetters reads them once, when it starts, then
 * deletes batch after batch of 5,000 under that reading. A DLQ with many dead letters past retention (the first run
 * after retention is set on a topic with a long DLQ history) takes many batches; a hold placed meanwhile is ignored
 * and every one of the topic's dead letters is deleted.
 */
let h: SinkHarness;
beforeAll(async () => {
  h = await createSinkHarness('attack5-dlq-hold');
});
afterAll(() => h?.close());

const count = async (topic: string) =>
  (await h.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM event_dlq WHERE topic = $1', [topic])).rows[0].n;

it('dead letters of a topic put on hold while expiry runs are kept past the batch in flight', async () => {
  const topic = h.topics.leads;
  // 6,000 dead letters received 25 days ago: two batches' worth under a 10-day retention.
  await seedOldDeadLetters(h.pool, topic, 6000, 25);
  await putRetentionRows(h.pool, { [topic]: 10 }, 'attack5');
  const activities = createMaintenanceActivities(activityDeps(h));
  const env = new MockActivityEnvironment();
  await env.run(() => activities.maintenanceStarted({ workflowId: 'attack5-dlq-hold', request: {} }));

  // Another session holds the oldest dead letter (a DLQ retry in progress does the same, FOR UPDATE), so the first
  // batch waits on it: the run has started and read its policies.
  const holder = await h.pool.connect();
  try {
    await holder.query('BEGIN');
    await holder.query('SELECT id FROM event_dlq WHERE topic = $1 ORDER BY id LIMIT 1 FOR UPDATE', [topic]);
    const running = env.run(() => activities.expireDeadLetters({ workflowId: 'attack5-dlq-hold', now: Date.now() }));
    await eventually(
      async () =>
        (
          await h.pool.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%DELETE FROM event_dlq%'`,
          )
        ).rows[0].n > 0,
      'the first expiry batch waiting on the held dead letter',
    );

    // The operator puts the topic on hold (kept forever) while the first batch is in flight.
    await putRetentionRows(h.pool, { [topic]: null }, 'attack5-legal-hold');
    await holder.query('ROLLBACK');
    await running;
  } finally {
    holder.release();
  }

  // The batch in flight when the hold was placed (5,000) may go; the rest is under a policy of keeping it.
  expect(await count(topic)).toBeGreaterThanOrEqual(1000); // fails: 0, every dead letter deleted under the hold
});

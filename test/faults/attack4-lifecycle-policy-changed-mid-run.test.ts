import { createMaintenanceActivities } from '../../activities/maintenance';
import { putRetentionRows } from '../../repository/retention';
import { createSinkHarness, type SinkHarness } from '../support/sink';
import { activityDeps, inActivity } from '../support/temporal';

/** Runs an activity in the mock environment, keeping its result's type. */

/**
 * Invariant 2: nothing within retention is removed. The maintenance workflow plans its steps once
 * (planJournalRetention) and then archives and removes them (archiveRetentionStep, applyRetentionStep) without
 * looking at the policies again. An operator who sets a topic to "keep forever" (PUT /retention, e.g. a legal hold)
 * while a run is between its plan and its removals still has that topic's rows removed from the journal, under a
 * policy no longer in force.
 */
let h: SinkHarness;
beforeAll(async () => {
  h = await createSinkHarness('attack4-policy-mid-run');
});
afterAll(() => h?.close());

it('rows of a topic set to keep forever after the plan are not removed by the run in flight', async () => {
  await h.pool.query(
    `INSERT INTO event_journal (tenant_id, topic, payload, received_at)
       SELECT 'acme', $1, jsonb_build_object('tenant_id', 'acme', 'n', n), '2025-01-15T00:00:00Z'
         FROM generate_series(1, 5) AS n`,
    [h.topics.leads],
  );
  await putRetentionRows(h.pool, { [h.topics.leads]: 30 }, 'attack4');

  const activities = createMaintenanceActivities(activityDeps(h));
  const steps = (await inActivity(() => activities.planJournalRetention({ now: Date.now() }))).filter(
    (s) => s.action === 'drop_partition' || s.topic === h.topics.leads,
  );
  expect(steps.length).toBeGreaterThan(0);

  // The operator puts the topic on hold (kept forever) while the run is between its plan and its steps.
  await putRetentionRows(h.pool, { [h.topics.leads]: null }, 'attack4-legal-hold');

  for (const step of steps) {
    try {
      const archived = await inActivity(() => activities.archiveRetentionStep({ workflowId: 'attack4-hold', step }));
      const { segment } = archived;
      if (segment) {
        await inActivity(() => activities.applyRetentionStep({ workflowId: 'attack4-hold', step, segment }));
      }
    } catch {
      // A step that refuses because the policy changed is the wanted behaviour.
    }
  }
  const { rows } = await h.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM event_journal WHERE topic = $1', [
    h.topics.leads,
  ]);
  expect(rows[0].n).toBe(5);
});

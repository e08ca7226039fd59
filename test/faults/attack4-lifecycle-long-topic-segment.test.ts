import { createMaintenanceActivities } from '../../activities/maintenance';
import { putRetentionRows } from '../../repository/retention';
import { createSinkHarness, type SinkHarness } from '../support/sink';
import { activityDeps, inActivity } from '../support/temporal';

/** Runs an activity in the mock environment, keeping its result's type. */

/**
 * Retention per topic: a topic's expired rows in a partition that other topics keep are archived as the segment
 * `<partition>.<topic>.before-<date>` (activities/maintenance.ts segmentOf). Kafka allows topic names of up to 249
 * characters and PUT /retention accepts them, but the archive refuses segment names longer than 200 characters
 * ("is malformed"): for a topic longer than about 160 characters the segment is never written, so that topic's
 * retention never happens and every maintenance run fails on it.
 */
let h: SinkHarness;
beforeAll(async () => {
  h = await createSinkHarness('attack4-long-topic');
});
afterAll(() => h?.close());

it('a topic with a long (valid Kafka) name has its expired rows archived and removed like any other', async () => {
  const longTopic = `crm.${'x'.repeat(240)}`;
  expect(longTopic.length).toBeLessThanOrEqual(249);
  await h.pool.query(
    `INSERT INTO event_journal (tenant_id, topic, payload, received_at) VALUES
       ('acme', $1, '{"tenant_id":"acme","n":1}', '2025-01-15T00:00:00Z'),
       ('acme', $2, '{"tenant_id":"acme","n":2}', '2025-01-15T00:00:00Z')`,
    [longTopic, h.topics.jobs],
  );
  // The long topic expires after 30 days; jobs are kept forever, so the partition stays and the topic's rows go.
  await putRetentionRows(h.pool, { [longTopic]: 30, [h.topics.jobs]: null }, 'attack4');

  const activities = createMaintenanceActivities(activityDeps(h));
  const steps = (await inActivity(() => activities.planJournalRetention({ now: Date.now() }))).filter(
    (s) => s.action === 'delete_rows' && s.topic === longTopic,
  );
  expect(steps).toHaveLength(1);
  const errors: string[] = [];
  for (const step of steps) {
    try {
      const archived = await inActivity(() => activities.archiveRetentionStep({ workflowId: 'attack4-long', step }));
      const { segment } = archived;
      if (segment) {
        await inActivity(() => activities.applyRetentionStep({ workflowId: 'attack4-long', step, segment }));
      }
    } catch (err) {
      errors.push((err as Error).message);
    }
  }
  const { rows } = await h.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM event_journal WHERE topic = $1', [
    longTopic,
  ]);
  expect({ errors, left: rows[0].n }).toEqual({ errors: [], left: 0 });
});

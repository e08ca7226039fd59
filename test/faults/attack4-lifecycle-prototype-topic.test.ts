import { createMaintenanceActivities } from '../../activities/maintenance';
import { createSinkHarness, type SinkHarness } from '../support/sink';
import { activityDeps, inActivity } from '../support/temporal';

/** Runs an activity in the mock environment, keeping its result's type. */

/**
 * Invariant 2: nothing within retention is removed; a topic without a policy is kept forever. The policies are a
 * plain object (lifecycle/retention.ts effectivePolicies, keepDays: `policies[topic]`), so for a topic whose name is
 * an Object.prototype member — `constructor`, `toString`, `valueOf`, `__proto__`, all valid Kafka topic names — the
 * lookup finds a function instead of "no policy". Its cutoff is an invalid date, every comparison with it is false,
 * and the plan deletes the topic's rows up to the end of every partition, today's included.
 */
let h: SinkHarness;
beforeAll(async () => {
  h = await createSinkHarness('attack4-prototype-topic');
});
afterAll(() => h?.close());

it.each(['constructor', 'valueOf'])('rows of a topic named %s, with no policy, are kept (forever)', async (topic) => {
  await h.pool.query(
    `INSERT INTO event_journal (tenant_id, topic, payload, received_at) VALUES
       ('acme', $1, '{"tenant_id":"acme","n":1}', '2025-01-15T00:00:00Z'),
       ('acme', $1, '{"tenant_id":"acme","n":2}', now())`,
    [topic],
  );
  const activities = createMaintenanceActivities(activityDeps(h));
  const steps = await inActivity(() => activities.planJournalRetention({ now: Date.now() }));
  for (const step of steps) {
    const archived = await inActivity(() => activities.archiveRetentionStep({ workflowId: `attack4-${topic}`, step }));
    const { segment } = archived;
    if (segment)
      await inActivity(() => activities.applyRetentionStep({ workflowId: `attack4-${topic}`, step, segment }));
  }
  const { rows } = await h.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM event_journal WHERE topic = $1', [
    topic,
  ]);
  expect({ steps: steps.length, kept: rows[0].n }).toEqual({ steps: 0, kept: 2 });
});

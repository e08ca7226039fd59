import fs from 'node:fs/promises';
import path from 'node:path';
import { MockActivityEnvironment, type TestWorkflowEnvironment } from '@temporalio/testing';
import { findManifest } from '../../archive';
import { createActivities } from '../../activities';
import { startLifecycleAudit } from '../../repository/lifecycle-audit';
import { putRetentionRows } from '../../repository/retention';
import { seedOldDeadLetters } from '../support/journal';
import type { SinkHarness } from '../support/sink';
import { activityDeps, createTimeSkippingWorld } from '../support/temporal';

/**
 * Invariant 2 (docs/lifecycle.md, section 2): nothing past retention is kept, dead letters included. The maintenance
 * workflow deletes dead letters past retention (and prunes removed_records) only after every journal step succeeded:
 * one journal step that fails for an operator — a segment that no longer verifies (ArchiveVerifyError), an
 * ArchiveMismatch, both not retried — fails every hourly run at that step, and until an operator repairs that one
 * segment, no dead letter of any topic is deleted, however far past its retention. The two have nothing in common:
 * dead letters are not archived.
 */
let env: TestWorkflowEnvironment;
let h: SinkHarness;
let close: () => Promise<void>;
const taskQueue = 'attack5-dlq-blocked';

beforeAll(async () => {
  ({ env, h, close } = await createTimeSkippingWorld('attack5-dlq-blocked', taskQueue));
}, 120_000);
afterAll(() => close?.());

it('a journal step that fails for an operator does not keep every dead letter past its retention', async () => {
  const { leads, jobs } = h.topics;
  // A journal slice of leads past a 30-day retention, and a dead letter of jobs past its 10-day retention.
  await h.pool.query(
    `INSERT INTO event_journal (tenant_id, topic, payload, received_at)
     SELECT 'acme', $1, jsonb_build_object('tenant_id', 'acme', 'n', n), now() - interval '400 days'
       FROM generate_series(1, 3) AS n`,
    [leads],
  );
  await seedOldDeadLetters(h.pool, jobs, 1, 25);
  await putRetentionRows(h.pool, { [leads]: 30, [jobs]: 10 }, 'attack5');

  // The leads slice was archived (and recorded) by an earlier run, and its file then damaged in the store.
  const activities = createActivities(activityDeps(h));
  await startLifecycleAudit(h.pool, { workflowId: 'attack5-earlier', kind: 'maintenance' });
  const [step] = (await activities.planJournalRetention({ now: Date.now() })).filter(
    (s) => s.action === 'delete_rows' && s.topic === leads,
  );
  const { segment } = (await new MockActivityEnvironment().run(() =>
    activities.archiveRetentionStep({ workflowId: 'attack5-earlier', step }),
  )) as Awaited<ReturnType<typeof activities.archiveRetentionStep>>;
  const manifest = (await findManifest(h.archive, segment!))!;
  const file = path.join(h.config.archive.dir, manifest.file.key);
  const bytes = await fs.readFile(file);
  bytes[bytes.length - 12] ^= 0xff;
  await fs.writeFile(file, bytes);

  // The hourly run: the damaged segment stops the leads step, for an operator.
  const failure = await env.client.workflow
    .execute('journalMaintenanceWorkflow', {
      taskQueue,
      workflowId: 'attack5-dlq-blocked-run',
      args: [{ trigger: 'schedule', requestedBy: 'schedule' }],
      workflowExecutionTimeout: '10m',
    })
    .then(
      () => undefined,
      (err: { cause?: { cause?: { type?: string } } }) => err.cause?.cause?.type,
    );
  expect(failure).toBe('ArchiveVerifyError');

  const { rows } = await h.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM event_dlq WHERE topic = $1', [
    jobs,
  ]);
  expect(rows[0].n).toBe(0); // fails: 1, the jobs dead letter is kept past its retention while leads' segment is broken
});

import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { createArchiveStore, deleteSegment, readSegment } from '../../archive';
import { createActivities } from '../../activities';
import { nextPeriod, partitionName } from '../../lifecycle/periods';
import { createJournalPartition } from '../../repository/journal-partitions';
import { startLifecycleAudit } from '../../repository/lifecycle-audit';
import { putRetentionRows } from '../../repository/retention';
import { withTransaction } from '../../shared/db';
import { shrinkConversionPartition } from '../support/journal-history';
import type { SinkHarness } from '../support/sink';
import { activityDeps, createTimeSkippingWorld, inActivity } from '../support/temporal';

/**
 * attack28 (against 2c76405): maintenance trusts an existing segment when *any* maintenance run ever recorded
 * `segment_archived` for that segment name (segmentArchiveRecorded, repository/lifecycle-audit.ts:121, looks the name
 * up across every run), not when the segment in the store is the one that run wrote and checked.
 *
 * Invariant: nothing an erasure deleted survives in the archive; a segment left by an attempt that ended before its
 * erasure check is written again, not trusted.
 *
 * Attack: run A archives event_journal_p2025_03 and records it (a lifecycle_audit row, so segment_archived is
 * appended); its step is not applied (a hold, a failed apply) and the segment is later withdrawn (deleted, as
 * withdrawStaleSegments does when the partition's step changes). A later attempt ('manual', no audit row: cancelled or
 * killed between its manifest and its record) writes the segment again; an erasure deletes a row meanwhile, unseen;
 * the retry finds the segment and run A's old record, and keeps it.
 *
 * Observed: the retry returns { rows: 40 } and the segment keeps 40 rows, the erased one among them (the journal has
 * 39); expected 39. Cause: activities/maintenance.ts:168 trusts `existing` on a record by name from another run.
 *
 * Fixed: a run records the manifest's created_at and the file's sha256 with the segment, and a later attempt trusts
 * only that very write (the rewrite here has the same bytes as run A's, so a sha256 alone was not enough).
 */
jest.setTimeout(180_000);

let env: TestWorkflowEnvironment;
let h: SinkHarness;
let close: () => Promise<void>;
const PER_MONTH = 40;

beforeAll(async () => {
  ({ env, h, close } = await createTimeSkippingWorld('a28segrec', 'a28-segrec', {
    JOURNAL_RETENTION: 'leads:400,jobs:90',
  }));
  void env;
  const start = new Date(Date.UTC(2025, 0, 1));
  const first = await shrinkConversionPartition(h.pool, start);
  for (let from = start; from < first; from = nextPeriod(from, 'month')) {
    const to = nextPeriod(from, 'month');
    await withTransaction(h.pool, (client) => createJournalPartition(client, partitionName(from, 'month'), from, to));
  }
  await h.pool.query(
    `INSERT INTO event_journal (tenant_id, topic, payload, received_at, kafka_key)
     SELECT 'acme', 'quotes', jsonb_build_object('tenant_id', 'acme', 'n', g), '2025-03-01'::timestamptz + make_interval(hours => g * 7), 'k' || g
       FROM generate_series(0, ${PER_MONTH - 1}) AS g`,
  );
}, 150_000);
afterAll(() => close?.());

it('a segment rewritten by an unrecorded attempt is not trusted because an older run once recorded that name', async () => {
  const activities = createActivities(activityDeps(h));
  const store = createArchiveStore(h.config.archive);
  const segment = 'event_journal_p2025_03';
  await putRetentionRows(h.pool, { quotes: 1 }, 'test');
  try {
    const step = (await activities.planJournalRetention({ now: Date.now() })).find((s) => s.partition === segment)!;
    expect(step).toMatchObject({ action: 'drop_partition' });
    await deleteSegment(store, segment);
    // Run A: a real run (audit row), archives and records the segment; its step is not applied.
    await startLifecycleAudit(h.pool, { workflowId: 'a28-run-a', kind: 'maintenance', request: {} });
    expect(await inActivity(() => activities.archiveRetentionStep({ workflowId: 'a28-run-a', step }))).toEqual({
      segment,
      rows: PER_MONTH,
    });
    // The segment is withdrawn later (the partition's step changed meanwhile).
    await deleteSegment(store, segment);
    // A later attempt writes it again and ends before its erasure check and record ('manual': no audit row).
    await inActivity(() => activities.archiveRetentionStep({ workflowId: 'manual', step }));
    // An erasure ran while it was written, unseen: the row is gone from the journal, still in the segment.
    const { rowCount } = await h.pool.query(
      `DELETE FROM event_journal WHERE topic = 'quotes' AND payload->>'n' = '0' AND received_at < '2025-04-01'`,
    );
    expect(rowCount).toBe(1);
    const again = await inActivity(() => activities.archiveRetentionStep({ workflowId: 'manual', step }));
    const archived: { payload: unknown }[] = [];
    for await (const row of readSegment(store, segment)) archived.push(row);
    const journal = Number(
      (
        await h.pool.query(
          `SELECT count(*) AS n FROM event_journal WHERE topic = 'quotes' AND received_at < '2025-04-01'`,
        )
      ).rows[0].n,
    );
    console.log(JSON.stringify({ again, archived: archived.length, journal }));
    // The segment must hold exactly what the journal still has: the erased row must not be in it.
    expect({ again, archived: archived.length }).toEqual({ again: { segment, rows: journal }, archived: journal });
  } finally {
    await deleteSegment(store, segment);
    await putRetentionRows(h.pool, { quotes: null }, 'test');
    await h.pool.query("DELETE FROM lifecycle_audit WHERE workflow_id = 'a28-run-a'");
  }
});

import type { ArchiveStore } from '../../archive';
import { createErasureActivities } from '../../activities/erasure';
import { createMaintenanceActivities } from '../../activities/maintenance';
import { subjectHash, type ErasureTarget } from '../../lifecycle/erasure-target';
import { storeErasureSubject } from '../../repository/erasure';
import { createJournalPartition, listJournalPartitions } from '../../repository/journal-partitions';
import { putRetentionRows } from '../../repository/retention';
import { ensureServiceKey } from '../../repository/service-keys';
import { withTransaction } from '../../shared/db';
import { uniqueSuffix } from '../support/env';
import { findValue } from '../support/erasure';
import { shrinkConversionPartition } from '../support/journal-history';
import { createSinkHarness, type SinkHarness } from '../support/sink';
import { activityDeps, inActivity } from '../support/temporal';

/**
 * Invariant 5: after an erasure completes, no store holds the value. Archiving checks for a running erasure only
 * before it starts: an erasure that starts while a segment is being written deletes the subject's rows from the
 * journal, finds no such segment yet (no manifest), and completes; the segment, written from a snapshot taken before
 * the deletes, then gets its manifest with the subject's row in it. The drop refuses (ArchiveMismatch, for an
 * operator), and the erased value stays in the archive.
 */
let h: SinkHarness;
const JANUARY = 'event_journal_p2025_01';

beforeAll(async () => {
  h = await createSinkHarness('attack6-erasure-archive');
  const january = new Date('2025-01-01T00:00:00Z');
  const february = new Date('2025-02-01T00:00:00Z');
  const first = await shrinkConversionPartition(h.pool, january);
  await withTransaction(h.pool, (client) => createJournalPartition(client, JANUARY, january, february));
  await withTransaction(h.pool, (client) => createJournalPartition(client, 'event_journal_p2025_02', february, first));
});
afterAll(() => h?.close());

it('an erasure that runs while a segment is being written leaves the value in no store', async () => {
  const value = `attack6-${uniqueSuffix()}@example.com`;
  await h.pool.query(
    `INSERT INTO event_journal (tenant_id, topic, payload, received_at)
       SELECT 'acme', $1, jsonb_build_object('tenant_id', 'acme', 'email', e), '2025-01-15T00:00:00Z'
         FROM unnest($2::text[]) AS e`,
    [h.topics.leads, [value, 'keep1@example.com', 'keep2@example.com']],
  );
  await putRetentionRows(h.pool, { [h.topics.leads]: 30 }, 'attack6');

  // The erasure, with its real activities, runs to its end just before the segment's manifest is written.
  const target: ErasureTarget = { kind: 'subject', field: 'email', value };
  const ref = { erasureId: `attack6-erasure-${uniqueSuffix()}`, subjectHash: '' };
  ref.subjectHash = subjectHash(await ensureServiceKey(h.pool, 'erasure'), target);
  await storeErasureSubject(h.pool, ref.subjectHash, target);
  const erasure = createErasureActivities(activityDeps(h));
  let erased = false;
  const eraseNow = async () => {
    erased = true;
    await inActivity(() => erasure.recordErasureStarted(ref));
    for (const table of ['event_journal', 'event_dlq'] as const) {
      await inActivity(() => erasure.eraseRows({ ...ref, table, afterId: 0, windowIds: 1000 }));
    }
    await inActivity(() => erasure.eraseArchiveRows(ref));
    await inActivity(() => erasure.recordErasureFinished({ ...ref, status: 'completed' }));
  };
  const store: ArchiveStore = Object.assign(Object.create(h.archive) as ArchiveStore, {
    put: async (key: string, body: Parameters<ArchiveStore['put']>[1]) => {
      if (key.endsWith('/manifest.json') && !erased) await eraseNow();
      return h.archive.put(key, body);
    },
  });
  const maintenance = createMaintenanceActivities({ ...activityDeps(h), archive: store });

  // Maintenance as Temporal runs it: a retryable failure is tried again, a non-retryable one ends the step.
  const [step] = (await inActivity(() => maintenance.planJournalRetention({ now: Date.now() }))).filter(
    (s) => s.partition === JANUARY,
  );
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const { segment } = await inActivity(() => maintenance.archiveRetentionStep({ workflowId: 'attack6', step }));
      if (segment) await inActivity(() => maintenance.applyRetentionStep({ workflowId: 'attack6', step, segment }));
      break;
    } catch (err) {
      if ((err as { nonRetryable?: boolean }).nonRetryable) break;
    }
  }
  expect(erased).toBe(true);
  expect(await findValue(h.pool, h.archive, value)).toEqual([]);
  // And the step still did its job: January archived without the subject, then dropped.
  expect((await listJournalPartitions(h.pool)).map((p) => p.name)).not.toContain(JANUARY);
});

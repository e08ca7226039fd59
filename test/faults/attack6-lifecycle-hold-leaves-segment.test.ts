import { listSegments, readSegment } from '../../archive';
import { countArchivedRange } from '../../activities/archive-range';
import { createMaintenanceActivities } from '../../activities/maintenance';
import { createJournalPartition, listJournalPartitions } from '../../repository/journal-partitions';
import { putRetentionRows } from '../../repository/retention';
import { withTransaction } from '../../shared/db';
import { shrinkConversionPartition } from '../support/journal-history';
import { createSinkHarness, type SinkHarness } from '../support/sink';
import { activityDeps, inActivity } from '../support/temporal';

/**
 * Invariants 3 and 4: every row leaves the journal into exactly one segment, and a cold replay sends each archived
 * row once. A legal hold placed between a partition's archive and its drop (the documented way to stop a run in
 * flight) makes the drop step give up, but its segment stays in the store while every row it holds stays in the
 * journal. The next run archives the other topic's rows of that partition again, into a slice segment, and deletes
 * them: those rows are now in two segments (a range replay's dry run counts them twice, the cold replay sends them
 * twice). When the hold is lifted, the partition's drop finds the old segment, which no longer matches the journal,
 * and fails for an operator (ArchiveMismatch) at every run.
 */
let h: SinkHarness;
const JANUARY = 'event_journal_p2025_01';

beforeAll(async () => {
  h = await createSinkHarness('attack6-hold-segment');
  // A partition for January 2025 alone: the conversion's partition shrunk to end before it, another up to the rest.
  const january = new Date('2025-01-01T00:00:00Z');
  const february = new Date('2025-02-01T00:00:00Z');
  const first = await shrinkConversionPartition(h.pool, january);
  await withTransaction(h.pool, (client) => createJournalPartition(client, JANUARY, january, february));
  await withTransaction(h.pool, (client) => createJournalPartition(client, 'event_journal_p2025_02', february, first));
});
afterAll(() => h?.close());

/** One maintenance pass over January's partition: archive then apply every step retention plans for it now. */
async function maintainJanuary(activities: ReturnType<typeof createMaintenanceActivities>, between = async () => {}) {
  const steps = (await inActivity(() => activities.planJournalRetention({ now: Date.now() }))).filter(
    (s) => s.partition === JANUARY,
  );
  for (const step of steps) {
    const { segment } = await inActivity(() => activities.archiveRetentionStep({ workflowId: 'attack6-hold', step }));
    await between();
    if (segment) await inActivity(() => activities.applyRetentionStep({ workflowId: 'attack6-hold', step, segment }));
  }
  return steps;
}

/** Every archived row id with the segments holding it. */
async function archivedIds(): Promise<Map<number, string[]>> {
  const ids = new Map<number, string[]>();
  for (const manifest of await listSegments(h.archive)) {
    for await (const row of readSegment(h.archive, manifest)) {
      ids.set(row.id, [...(ids.get(row.id) ?? []), manifest.segment]);
    }
  }
  return ids;
}

it('a hold placed between archive and drop leaves no segment behind that duplicates rows or blocks the drop', async () => {
  const { leads, jobs } = h.topics;
  const { rows: seeded } = await h.pool.query<{ id: string; topic: string }>(
    `INSERT INTO event_journal (tenant_id, topic, payload, received_at)
       SELECT 'acme', t, jsonb_build_object('tenant_id', 'acme', 'n', n), '2025-01-15T00:00:00Z'
         FROM unnest($1::text[]) AS t, generate_series(1, 5) AS n
     RETURNING id::text, topic`,
    [[leads, jobs]],
  );
  await putRetentionRows(h.pool, { [leads]: 30, [jobs]: 30 }, 'attack6');
  const activities = createMaintenanceActivities(activityDeps(h));

  // Run 1: January is to be dropped whole; it is archived, then jobs are put on hold before the drop.
  const first = await maintainJanuary(activities, () => putRetentionRows(h.pool, { [jobs]: null }, 'legal-hold'));
  expect(first.map((s) => s.action)).toEqual(['drop_partition']);
  // Run 2, under the hold: leads' rows of January are archived as a slice and deleted.
  const second = await maintainJanuary(activities);
  expect(second.map((s) => s.action)).toEqual(['delete_rows']);

  // Each archived row is in one segment, and a range replay over January counts each archived leads row once.
  const twice = [...(await archivedIds())].filter(([, segments]) => segments.length > 1);
  expect(twice).toEqual([]);
  const { rows: maxId } = await h.pool.query<{ id: number }>('SELECT max(id)::int AS id FROM event_journal');
  const range = await countArchivedRange(
    h.archive,
    h.pool,
    { start: '2025-01-01T00:00:00Z', end: '2025-02-01T00:00:00Z', topic: leads, maxId: maxId[0].id + 100 },
    () => undefined,
  );
  expect(range.counts.reduce((n, c) => n + c.events, 0)).toBe(5);

  // The hold is lifted: January goes, every row it held archived exactly once.
  await putRetentionRows(h.pool, { [jobs]: 30 }, 'hold-lifted');
  await maintainJanuary(activities);
  expect((await listJournalPartitions(h.pool)).map((p) => p.name)).not.toContain(JANUARY);
  const archived = await archivedIds();
  for (const { id } of seeded) expect(archived.get(Number(id))).toHaveLength(1);
  expect(archived.size).toBe(seeded.length);
});

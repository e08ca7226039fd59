import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import type { ArchiveStore } from '../../archive';
import { createActivities } from '../../activities';
import type { ArchiveChunkResult } from '../../activities/archive-range';
import type { PlannedRange, RangeChunkResult, RangeSelection } from '../../activities/range';
import { archiveWindow } from '../../bench/support/archive';
import { ensureTopics } from '../../shared/kafka';
import { readTopic, seedJournal } from '../support/journal';
import { createSinkHarness, type SinkHarness } from '../support/sink';
import { activityDeps } from '../support/temporal';

/**
 * attack59 (helper review of a46a17b, the range replay's exact pin: activities/range.ts countAll, planRange; found
 * next to it, not made by it).
 *
 * Invariant (docs/integrity.md §10, docs/lifecycle.md "Cold replay"): the count a range replay plans is what it
 * sends, but for rows erased meanwhile; rows retention moves to the archive while it runs are read there, sent once.
 *
 * Attack: a window of 30 journaled rows; planning pins and counts the journal, then lists the archive's segments;
 * maintenance archives the window and removes it from the journal in between (the archive store's listing of
 * countArchivedRange is where the test lets it run: at the second listing, newestArchivedId's being the first).
 *
 * Observed (547c8e5, a46a17b): planned total 60 (archived 30) for a window of 30 rows, each in the archive once and
 * none left in the journal: every row counted by countRange in the journal, and again by countArchivedRange in the
 * archive, where the journal no longer held it; the replay can send each at most once.
 *
 * Suspected cause: countAll counts the journal (countRange) and the archive (countArchivedRange, which counts a row
 * as the archive's when the journal no longer holds it) at two moments; a row moved between them is in both.
 *
 * Fixed: both counts see the journal as one snapshot, the archive's "still journaled" checks included (shared/db.ts
 * withOneSnapshot: exported by a transaction that locks nothing, imported by each statement's own short transaction,
 * so that no journal table stays locked while the archive is read). The row is counted once, in the journal, its
 * segment deferred; the replay sends the 30 rows, each once, from the archive pass.
 */
jest.setTimeout(120_000);

let h: SinkHarness;
beforeAll(async () => {
  h = await createSinkHarness('attack59');
});
afterAll(() => h?.close());

const WINDOW = { from: '2024-01-01T00:00:00Z', before: '2024-01-02T00:00:00Z' };
const TENANT = 'plan59';

/** h.archive, but its `n`-th listing first lets `meanwhile` run (as maintenance would, concurrently). */
function archiveWith(n: number, meanwhile: () => Promise<unknown>): ArchiveStore {
  let listings = 0;
  const store = h.archive;
  return new Proxy(store, {
    get(target, prop, receiver) {
      if (prop !== 'list') return Reflect.get(target, prop, receiver) as unknown;
      return async function* (...args: Parameters<ArchiveStore['list']>) {
        if (++listings === n) await meanwhile();
        yield* target.list(...args);
      };
    },
  });
}

it('a row maintenance archives while the replay is planned is counted once', async () => {
  const ids = await seedJournal(h.pool, 30, {
    topics: [h.topics.leads],
    tenants: [TENANT],
    from: new Date(WINDOW.from),
  });
  let archived = 0;
  const archive = archiveWith(2, async () => {
    archived = (await archiveWindow(h.pool, h.archive, { segment: 'plan59', ...WINDOW })).rows;
  });
  const activities = createActivities({ ...activityDeps(h), archive });
  const selection: RangeSelection = { start: WINDOW.from, end: WINDOW.before, tenantId: TENANT };
  const plan = (await new MockActivityEnvironment({}, { logger: new DefaultLogger('ERROR') }).run(
    activities.planRange,
    selection,
  )) as PlannedRange;
  expect(archived).toBe(ids.length);
  // Counted once, in the journal as it was when counting began; the segment, holding rows the journal then held, is
  // deferred to the pass after the journal's (planLateArchive), which sends them.
  expect({ total: plan.total, archived: plan.archived }).toEqual({ total: ids.length, archived: 0 });
  expect(plan.deferred).toEqual(['plan59']);

  // The replay, as the workflow runs it: the journal pass, then the archive pass over the planned and late segments.
  const targetTopic = `${h.topics.leads}.attack59`;
  await ensureTopics(h.kafka, [targetTopic], 1);
  const env = new MockActivityEnvironment({}, { logger: new DefaultLogger('ERROR') });
  const lineage = { source: 'range' as const, replayId: 'attack59', targetTopic };
  const hot = (await env.run(activities.replayRangePage, {
    ...lineage,
    filter: plan.filter,
    cursor: 0,
    limit: 100,
  })) as RangeChunkResult;
  const late = (await env.run(activities.planLateArchive, {
    filter: plan.filter,
    read: plan.segments ?? [],
    deferred: plan.deferred ?? [],
    plannedAt: plan.plannedAt!,
  })) as string[];
  const cold = (await env.run(activities.replayArchivePage, {
    ...lineage,
    filter: plan.filter,
    segments: [...(plan.segments ?? []), ...late],
    position: { index: 0, lastId: 0, generation: 0 },
    limit: 100,
    maxPages: 10,
    budgetMs: 30_000,
  })) as ArchiveChunkResult;
  const published = hot.published + cold.published;
  const sent = (await readTopic(h.kafka, targetTopic, published, 10_000)).map((m) => Number(m._replayed_from_event_id));
  expect({ planned: plan.total, published }).toEqual({ planned: ids.length, published: ids.length });
  expect(sent.sort((a, b) => a - b)).toEqual(ids);
});

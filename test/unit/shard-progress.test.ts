import fc from 'fast-check';
import type { ReplayProgress, ShardProgress } from '../../workflows/definitions';
import { shardTotals, withChildProgress } from '../../workflows/shard-progress';

/**
 * The progress view of a sharded replay (workflows/shard-progress.ts), over generated coordinators and children:
 * a child's own answer replaces its report only when the child is unfinished and not behind; the totals are always
 * the sums of the shards shown, and the cursor the lowest of the unfinished ones.
 */

/** A shard as its coordinator last heard of it, and the child's own (cumulative) counts since: `ahead` more pages. */
const shardCase = fc.record({
  status: fc.constantFrom<ShardProgress['status']>('running', 'paused', 'completed'),
  reported: fc.record({
    published: fc.nat(10_000),
    failed: fc.nat(100),
    pages: fc.nat(1_000),
    cursor: fc.nat(1_000_000),
  }),
  ahead: fc.integer({ min: -3, max: 20 }),
  answered: fc.boolean(),
});

const cases = fc.array(shardCase, { minLength: 1, maxLength: 17 });

type ShardCase = typeof shardCase extends fc.Arbitrary<infer T> ? T : never;

function build(generated: ShardCase[]) {
  const shards: ShardProgress[] = generated.map((g, i) => ({
    workflow_id: `replay-range-x-shard-${i}`,
    status: g.status,
    matched: 100_000,
    ...g.reported,
    eventsPerSecond: g.reported.published / 100,
    maxEventsPerSecond: null,
  }));
  const parent: ReplayProgress = {
    status: 'running',
    matched: 100_000 * shards.length,
    ...shardTotals(shards, 0),
    maxEventsPerSecond: null,
    shards,
  };
  const answers = new Map<string, ReplayProgress | null>();
  generated.forEach((g, i) => {
    if (!g.answered) return answers.set(shards[i].workflow_id, null);
    const pages = Math.max(0, g.reported.pages + g.ahead);
    const more = Math.max(0, g.ahead);
    answers.set(shards[i].workflow_id, {
      status: g.status === 'completed' ? 'completed' : g.status,
      matched: 100_000,
      published: g.reported.published + more * 7,
      failed: g.reported.failed + more,
      cursor: g.reported.cursor + more * 10,
      pages,
      eventsPerSecond: (g.reported.published + more * 7) / 100,
      maxEventsPerSecond: null,
    });
  });
  return { parent, answers };
}

it('takes a child’s own counts only when it is unfinished, answered and not behind its report', () => {
  fc.assert(
    fc.property(cases, (generated) => {
      const { parent, answers } = build(generated);
      const view = withChildProgress(parent, answers);
      view.shards!.forEach((shard, i) => {
        const own = answers.get(shard.workflow_id);
        const fresher = generated[i].status !== 'completed' && own && own.pages >= parent.shards![i].pages;
        const expected = fresher ? own : parent.shards![i];
        expect({ published: shard.published, pages: shard.pages, cursor: shard.cursor }).toEqual({
          published: expected.published,
          pages: expected.pages,
          cursor: expected.cursor,
        });
        // Never behind the coordinator's copy.
        expect(shard.published).toBeGreaterThanOrEqual(parent.shards![i].published);
        expect(shard.pages).toBeGreaterThanOrEqual(parent.shards![i].pages);
      });
    }),
  );
});

it('keeps totals equal to the sums of the shards it shows, the cursor the lowest unfinished one', () => {
  fc.assert(
    fc.property(cases, (generated) => {
      const { parent, answers } = build(generated);
      const view = withChildProgress(parent, answers);
      const shards = view.shards!;
      expect(view.published).toBe(shards.reduce((sum, s) => sum + s.published, 0));
      expect(view.failed).toBe(shards.reduce((sum, s) => sum + s.failed, 0));
      expect(view.pages).toBe(shards.reduce((sum, s) => sum + s.pages, 0));
      const unfinished = shards.filter((s) => s.status !== 'completed').map((s) => s.cursor);
      expect(view.cursor).toBe(unfinished.length > 0 ? Math.min(...unfinished) : parent.cursor);
      // Rounded to one decimal, as every progress view shows it.
      const rate = shards.reduce((sum, s) => sum + s.eventsPerSecond, 0);
      expect(Math.abs(view.eventsPerSecond - rate)).toBeLessThanOrEqual(0.05 + 1e-9);
      // What the coordinator alone decides stays its own.
      expect({ status: view.status, matched: view.matched, maxEventsPerSecond: view.maxEventsPerSecond }).toEqual({
        status: parent.status,
        matched: parent.matched,
        maxEventsPerSecond: parent.maxEventsPerSecond,
      });
    }),
  );
});

it('leaves the progress of an unsharded replay as it is', () => {
  const plain: ReplayProgress = {
    status: 'running',
    matched: 10,
    published: 4,
    failed: 0,
    cursor: 40,
    pages: 2,
    eventsPerSecond: 1.5,
    maxEventsPerSecond: null,
  };
  expect(withChildProgress(plain, new Map())).toBe(plain);
});

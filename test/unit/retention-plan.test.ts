import fc from 'fast-check';
import { cutoff, effectivePolicies, keepDays, planRetention, type RetentionPolicies } from '../../lifecycle/retention';
import { nextPeriod, partitionName } from '../../lifecycle/periods';
import type { JournalPartition } from '../../repository/journal-partitions';

// lifecycle/retention.ts: what retention asks of the journal. Invariants, over generated partitions and policies:
// nothing within a topic's retention is ever planned away, a topic kept forever blocks the drop of any partition
// that holds it, the default partition is never touched, and every step stays inside its partition.

const TOPICS = ['leads', 'jobs', 'quotes'];

const months = (start: Date, n: number): JournalPartition[] => {
  const out: JournalPartition[] = [{ name: 'event_journal_before_x', from: null, to: start, isDefault: false }];
  let from = start;
  for (let i = 0; i < n; i++) {
    const to = nextPeriod(from, 'month');
    out.push({ name: partitionName(from, 'month'), from, to, isDefault: false });
    from = to;
  }
  out.push({ name: 'event_journal_default', from: null, to: null, isDefault: true });
  return out;
};

const world = fc.record({
  partitions: fc.integer({ min: 1, max: 30 }).map((n) => months(new Date(Date.UTC(2025, 0, 1)), n)),
  policies: fc.dictionary(
    fc.constantFrom(...TOPICS, '*'),
    fc.option(fc.integer({ min: 1, max: 800 }), { nil: null }),
  ) as fc.Arbitrary<RetentionPolicies>,
  present: fc.func(fc.subarray(TOPICS)),
  now: fc.date({ min: new Date(Date.UTC(2025, 0, 1)), max: new Date(Date.UTC(2028, 0, 1)), noInvalidDate: true }),
});

it('never plans away anything a topic still keeps; forever blocks drops; the default partition is never touched', () => {
  fc.assert(
    fc.property(world, ({ partitions, policies, present, now }) => {
      const topicsIn = Object.fromEntries(partitions.map((p) => [p.name, present(p.name)]));
      const steps = planRetention(partitions, topicsIn, policies, now);
      for (const step of steps) {
        const partition = partitions.find((p) => p.name === step.partition)!;
        expect(partition.isDefault).toBe(false);
        const topics = topicsIn[step.partition].length ? topicsIn[step.partition] : ['*'];
        if (step.action === 'drop_partition') {
          // Every topic in it has a finite retention whose cutoff is at or after the partition's end.
          for (const topic of topics) {
            const days = keepDays(policies, topic);
            expect(days).not.toBeNull();
            expect(cutoff(days!, now).getTime()).toBeGreaterThanOrEqual(partition.to!.getTime());
          }
          expect(steps.filter((s) => s.partition === step.partition)).toHaveLength(1);
        } else {
          const days = keepDays(policies, step.topic);
          expect(days).not.toBeNull();
          const before = new Date(step.before).getTime();
          // Only rows older than the topic's cutoff, and only inside the partition.
          expect(before).toBeLessThanOrEqual(cutoff(days!, now).getTime());
          expect(before).toBeLessThanOrEqual(partition.to!.getTime());
          if (partition.from) expect(before).toBeGreaterThan(partition.from.getTime());
          expect(topicsIn[step.partition]).toContain(step.topic);
        }
      }
    }),
    { numRuns: 500 },
  );
});

it('plans the expected steps for leads 400 days, jobs 90 days, the rest forever', () => {
  const partitions = months(new Date(Date.UTC(2025, 0, 1)), 24);
  const now = new Date(Date.UTC(2026, 11, 1, 10));
  const topicsIn: Record<string, string[]> = Object.fromEntries(partitions.map((p) => [p.name, ['leads', 'jobs']]));
  topicsIn.event_journal_p2025_03 = ['leads', 'jobs', 'quotes'];
  const policies = effectivePolicies({ leads: 400, jobs: 90 }, []);
  const steps = planRetention(partitions, topicsIn, policies, now);
  // leads' cutoff: 2025-10-27; jobs': 2026-09-02. Months ending by 2025-10-27 (Jan–Sep 2025) are dropped whole,
  // except March, which also holds 'quotes' (forever): there only leads and jobs rows go.
  const drops = steps.filter((s) => s.action === 'drop_partition').map((s) => s.partition);
  expect(drops).toEqual([
    'event_journal_before_x',
    'event_journal_p2025_01',
    'event_journal_p2025_02',
    'event_journal_p2025_04',
    'event_journal_p2025_05',
    'event_journal_p2025_06',
    'event_journal_p2025_07',
    'event_journal_p2025_08',
    'event_journal_p2025_09',
  ]);
  expect(steps.filter((s) => s.partition === 'event_journal_p2025_03').map((s) => s.action)).toEqual([
    'delete_rows',
    'delete_rows',
  ]);
  // October 2025: leads up to its cutoff, jobs all of it.
  expect(steps.filter((s) => s.partition === 'event_journal_p2025_10')).toEqual([
    { action: 'delete_rows', partition: 'event_journal_p2025_10', topic: 'leads', before: '2025-10-27T00:00:00.000Z' },
    { action: 'delete_rows', partition: 'event_journal_p2025_10', topic: 'jobs', before: '2025-11-01T00:00:00.000Z' },
  ]);
  // A PUT /retention row overrides the configured value: leads kept forever now.
  const overridden = effectivePolicies({ leads: 400, jobs: 90 }, [{ topic: 'leads', keep_days: null }]);
  const after = planRetention(partitions, topicsIn, overridden, now);
  expect(after.some((s) => s.action === 'drop_partition')).toBe(false);
  expect(after.every((s) => s.action === 'delete_rows' && s.topic === 'jobs')).toBe(true);
});

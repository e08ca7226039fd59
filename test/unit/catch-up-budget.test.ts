import fc from 'fast-check';
import { createCatchUpBudget, type BudgetClock } from '../../api/live/catch-up-budget';

/** A clock that only moves when someone sleeps on it: the budget's arithmetic, without real time. */
function fakeClock(): BudgetClock & { elapsed: () => number } {
  let now = 0;
  return {
    now: () => now,
    sleep: async (ms) => {
      now += ms;
    },
    elapsed: () => now,
  };
}

it('lets a second of rows through at once, then paces the rest to the rate, in arrival order', async () => {
  const clock = fakeClock();
  const budget = createCatchUpBudget(1000, clock);
  const order: string[] = [];
  const open = () => false;
  await Promise.all([
    budget.take(1000, open).then(() => order.push(`a@${clock.elapsed()}`)),
    budget.take(500, open).then(() => order.push(`b@${clock.elapsed()}`)),
    budget.take(500, open).then(() => order.push(`c@${clock.elapsed()}`)),
  ]);
  expect(order).toEqual(['a@0', 'b@500', 'c@1000']);
});

it('is off at 0: nothing waits', async () => {
  const clock = fakeClock();
  const budget = createCatchUpBudget(0, clock);
  for (let i = 0; i < 10; i++) await budget.take(1_000_000, () => false);
  expect(clock.elapsed()).toBe(0);
});

it('a closed client stops waiting and takes nothing from the next', async () => {
  const clock = fakeClock();
  const budget = createCatchUpBudget(100, clock);
  await budget.take(100, () => false); // the bucket is empty now
  let closed = false;
  const gone = budget.take(100, () => closed);
  closed = true;
  await gone;
  const before = clock.elapsed();
  await budget.take(100, () => false);
  // The next client waits only for its own rows (one second at most), not for the closed one's too.
  expect(clock.elapsed() - before).toBeLessThanOrEqual(1000);
});

it('never sends more than one second of budget plus the rate × elapsed time (generated pages and rates)', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 5000 }),
      fc.array(fc.integer({ min: 1, max: 600 }), { minLength: 1, maxLength: 40 }),
      async (rate, pages) => {
        const clock = fakeClock();
        const budget = createCatchUpBudget(rate, clock);
        let sent = 0;
        for (const rows of pages) {
          await budget.take(rows, () => false);
          sent += rows;
          // A page larger than a second's budget is owed; so one page's rows beyond the bound are allowed.
          expect(sent).toBeLessThanOrEqual(rate + (rate * clock.elapsed()) / 1000 + Math.max(0, rows - rate) + 1e-6);
        }
      },
    ),
  );
});

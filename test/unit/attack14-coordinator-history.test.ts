import { MAX_REPLAY_SHARDS } from '../../journal/kinds';
import { CONTROL_HISTORY_BUDGET } from '../../workflows/definitions';
import { CHUNK_BUDGET_MS } from '../../workflows/range-replay';
import { reportDue } from '../../workflows/range-shards';

/**
 * Found by the adversarial review of issue 14 (attack14, finding 3): the coordinator of a sharded replay never
 * continues as new (its children would close with it), and every progress report of every child is a signal in its
 * history. Temporal terminates a workflow whose history passes 51,200 events (the server's default
 * limit.historyCount.error). With reports capped at one per 10 minutes per child, the 16 children of a throttled
 * week-long replay passed it on day 5; reports are now spaced by a fifth of the running time with no cap (the API
 * reads the running children's own progress), so the history grows with the logarithm of the replay's length.
 *
 * A model, not a run: it applies reportDue (the rule each child applies after every chunk) over a child's running
 * time, one check per unthrottled chunk (CHUNK_BUDGET_MS), the most checks a child makes. A report arriving at an idle
 * coordinator costs it 4 history events: WorkflowExecutionSignaled and the workflow task it triggers (scheduled,
 * started, completed).
 */
const HISTORY_EVENT_LIMIT = 51_200;
const EVENTS_PER_REPORT = 4;
const DAY_MS = 86_400_000;
/** The children of the largest sharded replay: REPLAY_SHARDS at its cap, and one for rows archived meanwhile. */
const CHILDREN = MAX_REPLAY_SHARDS + 1;

/** When one child reports during a year of replaying (a week under the legacy cap), computed once per rule. */
const reportTimes = new Map<boolean, number[]>();
function reportsOf(runningMs: number, legacyCap = false): number {
  if (!reportTimes.has(legacyCap)) {
    const times: number[] = [];
    let reportedAt = 0;
    for (let now = CHUNK_BUDGET_MS; now <= (legacyCap ? 7 : 365) * DAY_MS; now += CHUNK_BUDGET_MS) {
      if (reportDue(0, reportedAt, now, legacyCap)) times.push((reportedAt = now));
    }
    reportTimes.set(legacyCap, times);
  }
  return reportTimes.get(legacyCap)!.filter((t) => t <= runningMs).length;
}

const historyOf = (runningMs: number, legacyCap = false) =>
  CHILDREN * reportsOf(runningMs, legacyCap) * EVENTS_PER_REPORT;

it('gives the figures docs/integrity.md states: about 40 reports in a day, 50 in a week, 66 in a year', () => {
  expect(Math.abs(reportsOf(DAY_MS) - 40)).toBeLessThanOrEqual(5);
  expect(Math.abs(reportsOf(7 * DAY_MS) - 50)).toBeLessThanOrEqual(5);
  expect(Math.abs(reportsOf(365 * DAY_MS) - 66)).toBeLessThanOrEqual(5);
});

it('fits a year of reports of the most children, and one last control, in what CONTROL_HISTORY_BUDGET leaves', () => {
  // Past the budget the API refuses controls (test/api/attack15-coordinator-controls.test.ts); one admitted just
  // below it costs at most 4 + 4 per child.
  const lastControl = 4 + 4 * CHILDREN;
  expect(CONTROL_HISTORY_BUDGET + lastControl + historyOf(365 * DAY_MS)).toBeLessThanOrEqual(HISTORY_EVENT_LIMIT);
});

it('control: with the 10-minute cap runs started before the fix keep, a week-long replay passes the limit', () => {
  expect(historyOf(7 * DAY_MS, true)).toBeGreaterThan(HISTORY_EVENT_LIMIT);
  expect(historyOf(7 * DAY_MS)).toBeLessThan(HISTORY_EVENT_LIMIT / 2);
});

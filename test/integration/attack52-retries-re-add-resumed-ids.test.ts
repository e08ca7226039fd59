import { chunkProgressOf as progressOf, progressDatabase, type AttemptOf } from '../support/progress-context';

const database = progressDatabase('attack52_readd');

/**
 * attack52 against a501095
 *
 * Invariant (3): bounded, no unbounded growth: what an activity keeps in send_progress_sent is the ids of its current
 * page sent (sql/023: "The ids of the activity's current page sent so far, a row per wave"), O(page) whatever the
 * number of attempts.
 *
 * Attack: a per_key range chunk is part way through a one-key page (499 of its 500 events sent) when Kafka goes down.
 * pageOptions retries without a maximum ("keep retrying (backoff up to 10 min) until Kafka is back"): every attempt
 * resumes from the row (499 ids), makes its first write before its first wave, and fails on that wave. 60 attempts
 * (about 8 hours of outage at the 10 min backoff).
 *
 * Observed: every attempt's first write inserts the 499 ids it resumed with again (written.ids starts at 0, the page
 * is the row's): send_progress_sent holds 499 × 61 ids for one page, growing with the outage, and each resume
 * aggregates them all (array_agg DISTINCT over the unnest).
 *
 * Suspected cause: activities/durable-progress.ts:114-121 (the attempt's first write sets written = { page, ids: 0 }
 * and adds sent.slice(0), the ids resumed from the row included) with repository/send-progress.ts:82-91 (addSentIds
 * appends without regard to ids already stored).
 *
 * Fixed: an attempt that resumes from the row knows the ids stored (durableProgress' `written`) and adds only those
 * sent after them.
 */
it('attempts that fail at their first wave do not each store the page’s ids again', async () => {
  const at = (attempt: number): AttemptOf => ({ workflowId: 'wf-readd', activityId: '1', attempt });
  const sent = Array.from({ length: 499 }, (_, i) => i + 1);
  const first = progressOf(at(1));
  await first.resume(database());
  for (let n = 0; n <= sent.length; n++)
    await first.write(database(), { cursor: 0, pages: 0, pageSent: sent.slice(0, n) });

  for (let attempt = 2; attempt <= 61; attempt++) {
    const retry = progressOf(at(attempt), { cursor: 0, pages: 0 }); // the server's beat: before the page
    const resumed = await retry.resume(database());
    expect(resumed?.pageSent).toHaveLength(499);
    await retry.write(database(), { cursor: 0, pages: 0, pageSent: resumed?.pageSent }); // then its wave fails
  }

  const { rows } = await database().query<{ n: number }>(
    `SELECT coalesce(sum(cardinality(ids)), 0)::int AS n FROM send_progress_sent WHERE run_id = 'wf-readd-run'`,
  );
  expect(rows[0].n).toBeLessThanOrEqual(2 * 499);
});

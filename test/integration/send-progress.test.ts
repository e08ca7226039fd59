import fc from 'fast-check';
import { batchShape, durableProgress } from '../../activities/durable-progress';
import type { RefusedIds } from '../../journal/kinds';
import { claimSendProgress, SEND_PROGRESS_KEPT_DAYS, SEND_PROGRESS_OPEN_DAYS } from '../../repository/send-progress';
import {
  chunkProgressOf as progressOf,
  progressContext,
  progressDatabase,
  type AttemptOf,
} from '../support/progress-context';

/**
 * send_progress on Postgres (sql/023, 024, repository/send-progress.ts, activities/durable-progress.ts).
 *
 * Invariants: an activity's row is never taken by an attempt scheduled before the one that last wrote it, nor once
 * the activity is over (a stale attempt's write is refused, and its wave is not sent); a retry resumes from the
 * written progress or its heartbeat, whichever is further on; a wave's write stores that wave's ids only (the page's
 * ids sent so far are their union), and the page's first write the ids it refused, which every later attempt resumes
 * with; an attempt's claim closes its workflow's earlier activities' rows, and the sweep
 * deletes a few rows closed SEND_PROGRESS_KEPT_DAYS ago or unclaimed for SEND_PROGRESS_OPEN_DAYS, and no other row.
 */
const database = progressDatabase('send_progress');

let run = 0;
const key = (at: AttemptOf) => ({
  workflowId: at.workflowId,
  runId: `${at.workflowId}-run`,
  activityId: at.activityId,
  fence: at.scheduledMs ?? at.attempt * 1000,
});

it('attempts claiming in any order leave the latest-scheduled one’s fence; earlier ones are refused', async () => {
  await fc.assert(
    fc.asyncProperty(fc.uniqueArray(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 8 }), async (times) => {
      const workflowId = `wf-order-${run++}`;
      const latest = Math.max(...times);
      const outcomes = await Promise.all(
        times.map((t) => claimSendProgress(database(), key({ workflowId, activityId: '1', attempt: t }))),
      );
      const { rows } = await database().query<{ fence: string }>(
        'SELECT fence FROM send_progress WHERE workflow_id = $1',
        [workflowId],
      );
      expect(rows.map((r) => Number(r.fence))).toEqual([latest * 1000]); // attempt n is scheduled at n s
      expect(outcomes[times.indexOf(latest)]).toEqual({ stale: false });
    }),
    { numRuns: 25 },
  );
});

it('a stale attempt’s writes reject, so that its wave is not sent; the row’s ids are the current attempt’s', async () => {
  const at = (attempt: number): AttemptOf => ({ workflowId: 'wf-stale', activityId: '1', attempt });
  const stale = progressOf(at(1));
  await stale.resume(database());
  await stale.write(database(), { cursor: 0, pages: 0, pageSent: [] });
  const retry = progressOf(at(2));
  expect(await retry.resume(database())).toEqual({ cursor: 0, pages: 0 });
  // Attempt 1's next wave (ids added) and a new page of it (a page write): both refused once attempt 2 has claimed.
  await expect(stale.write(database(), { cursor: 0, pages: 0, pageSent: [1] })).rejects.toThrow(
    'A later attempt of wf-stale / activity 1 (attempt 1) has claimed its progress, or the activity is over',
  );
  await expect(stale.write(database(), { cursor: 9, pages: 1 })).rejects.toThrow('A later attempt of wf-stale');
  // And so is its claim, were it to resume again.
  await expect(stale.resume(database())).rejects.toThrow('A later attempt of wf-stale');
  await retry.write(database(), { cursor: 0, pages: 0, pageSent: [1] });
  await retry.write(database(), { cursor: 0, pages: 0, pageSent: [1, 3] });
  expect(await progressOf(at(3)).resume(database())).toEqual({ cursor: 0, pages: 0, pageSent: [1, 3] });
});

it('a retry resumes from the written progress or its heartbeat, whichever is further on', async () => {
  const at = (activityId: string, attempt: number): AttemptOf => ({ workflowId: 'wf-resume', activityId, attempt });
  const first = progressOf(at('7', 1));
  await first.resume(database());
  await first.write(database(), { cursor: 10, pages: 1, pageSent: [11, 12] });
  let attempt = 2;
  const resume = (beat: unknown) => progressOf(at('7', attempt++), beat).resume(database());
  // Written ahead of the heartbeat the server recorded (the usual case after a cut-off or a death).
  expect(await resume({ cursor: 10, pages: 1, pageSent: [11] })).toEqual({ cursor: 10, pages: 1, pageSent: [11, 12] });
  expect(await resume({ cursor: 0, pages: 0 })).toEqual({ cursor: 10, pages: 1, pageSent: [11, 12] });
  expect(await resume(undefined)).toEqual({ cursor: 10, pages: 1, pageSent: [11, 12] });
  // The heartbeat ahead (an attempt of a worker without send_progress, during an upgrade or a rollback).
  expect(await resume({ cursor: 20, pages: 2 })).toEqual({ cursor: 20, pages: 2 });
  expect(await resume({ cursor: 10, pages: 1, pageSent: [11, 12, 13] })).toEqual({
    cursor: 10,
    pages: 1,
    pageSent: [11, 12, 13],
  });
  // Nothing written: the heartbeat, or nothing.
  const other = (attempt: number): AttemptOf => ({ workflowId: 'wf-resume-none', activityId: '8', attempt });
  expect(await progressOf(other(1), { cursor: 5, pages: 1 }).resume(database())).toEqual({ cursor: 5, pages: 1 });
  expect(await progressOf(other(2)).resume(database())).toBeUndefined();
});

it('each wave stores its own ids: a one-key page of 500 waves stores the 499 sent before the last, the next page none', async () => {
  const at: AttemptOf = { workflowId: 'wf-waves', activityId: '1', attempt: 1 };
  const durable = progressOf(at);
  await durable.resume(database());
  const sent: number[] = [];
  for (let id = 1; id <= 500; id++) {
    await durable.write(database(), { cursor: 0, pages: 0, pageSent: [...sent] }); // before the wave of `id`
    sent.push(id);
  }
  const stored = async () =>
    (
      await database().query<{ n: number }>(
        `SELECT coalesce(sum(cardinality(ids)), 0)::int AS n FROM send_progress_sent WHERE run_id = 'wf-waves-run'`,
      )
    ).rows[0].n;
  expect(await stored()).toBe(499);
  const retry = progressOf({ ...at, attempt: 2 });
  expect(await retry.resume(database())).toEqual({ cursor: 0, pages: 0, pageSent: sent.slice(0, 499) });
  await retry.write(database(), { cursor: 500, pages: 1, pageSent: [] });
  expect(await stored()).toBe(0);
});

it('a batch page keeps the ids it sent', async () => {
  const at: AttemptOf = { workflowId: 'wf-batch', activityId: '1', attempt: 1 };
  const batch = (attempt: number, beat?: unknown) =>
    durableProgress<{ sent?: number[] }>(progressContext({ ...at, attempt }, beat), batchShape);
  const first = batch(1);
  await first.resume(database());
  await first.write(database(), { sent: [] });
  await first.write(database(), { sent: [4, 9] });
  expect(await batch(2, { sent: [4] }).resume(database())).toEqual({ sent: [4, 9] });
});

it('the ids a page refused are kept by kind with its ids sent, written once, and resumed by every later attempt', async () => {
  const at = (attempt: number): AttemptOf => ({ workflowId: 'wf-refused', activityId: '1', attempt });
  const first = progressOf(at(1));
  await first.resume(database());
  // The page's first wave: its refusals, decided as it began, go with it; the next wave's write adds only ids sent.
  await first.write(database(), { cursor: 0, pages: 0, pageSent: [], pageRefused: { hops: [1], topic: [4] } });
  await first.write(database(), { cursor: 0, pages: 0, pageSent: [2], pageRefused: { hops: [1], topic: [4] } });
  const rows = async () =>
    (
      await database().query<{ kind: string; ids: string[] }>(
        `SELECT kind, ids FROM send_progress_sent WHERE run_id = 'wf-refused-run' ORDER BY kind, ids`,
      )
    ).rows.map((r) => `${r.kind} ${r.ids.join()}`);
  expect(await rows()).toEqual(['hops 1', 'sent 2', 'topic 4']);
  // Attempt 2 resumes from the row, refusals included; its page refuses one more of its own (5): only that is added.
  const second = progressOf(at(2));
  expect(await second.resume(database())).toEqual({
    cursor: 0,
    pages: 0,
    pageSent: [2],
    pageRefused: { hops: [1], topic: [4] },
  });
  await second.write(database(), {
    cursor: 0,
    pages: 0,
    pageSent: [2],
    pageRefused: { hops: [1], topic: [4], transform: [5] },
  });
  expect(await rows()).toEqual(['hops 1', 'sent 2', 'topic 4', 'transform 5']);
  // A heartbeat ahead on the row's page (more ids sent) keeps the row's refusals as well as its own.
  expect(
    await progressOf(at(3), { cursor: 0, pages: 0, pageSent: [2, 3], pageRefused: { hops: [1] } }).resume(database()),
  ).toEqual({ cursor: 0, pages: 0, pageSent: [2, 3], pageRefused: { hops: [1], topic: [4], transform: [5] } });
  // The next page drops them with the page's ids sent.
  await progressOf(at(4)).resume(database());
  const next = progressOf(at(5));
  await next.resume(database());
  await next.write(database(), { cursor: 9, pages: 1, pageSent: [] });
  expect(await rows()).toEqual([]);
  // A batch page's refusals, the same way.
  const batch = (attempt: number) =>
    durableProgress<{ sent?: number[]; refused?: RefusedIds }>(
      progressContext({ workflowId: 'wf-refused-batch', activityId: '1', attempt }),
      batchShape,
    );
  const page = batch(1);
  await page.resume(database());
  await page.write(database(), { sent: [7], refused: { transform: [3, 8] } });
  expect(await batch(2).resume(database())).toEqual({ sent: [7], refused: { transform: [3, 8] } });
});

it('a claim closes its workflow’s earlier activities’ rows; the sweep deletes closed rows after a week, open ones after 30 days', async () => {
  const progress = { cursor: 0, pages: 0 };
  const at = (workflowId: string, activityId: string, scheduledMs: number, runId?: string): AttemptOf => ({
    workflowId,
    activityId,
    attempt: 1,
    scheduledMs,
    runId,
  });
  const written = async (attempt: AttemptOf, pageSent: number[] = []) => {
    const durable = progressOf(attempt);
    await durable.resume(database());
    await durable.write(database(), { ...progress, pageSent });
  };
  await written(at('wf-a', '1', 1000), [1]);
  await written(at('wf-a', '2', 3000, 'wf-a-run-0')); // a run before continue-as-new
  await written(at('wf-b', '1', 1000));
  await written(at('wf-old', '1', 1000));
  await written(at('wf-recent', '1', 1000));
  const age = (workflowId: string, days: number) =>
    database().query(`UPDATE send_progress SET updated_at = now() - $2 * interval '1 day' WHERE workflow_id = $1`, [
      workflowId,
      days,
    ]);
  await age('wf-old', SEND_PROGRESS_OPEN_DAYS + 1);
  await age('wf-recent', SEND_PROGRESS_OPEN_DAYS - 1);

  await progressOf(at('wf-a', '3', 5000)).resume(database()); // the workflow's next activity claims
  const rows = async () =>
    (
      await database().query<{ w: string; a: string; closed: boolean; details: unknown; ids: number }>(
        `SELECT workflow_id AS w, activity_id AS a, closed, details,
                (SELECT count(*)::int FROM send_progress_sent s WHERE s.run_id = p.run_id AND s.activity_id = p.activity_id) AS ids
           FROM send_progress p WHERE workflow_id IN ('wf-a', 'wf-b', 'wf-old', 'wf-recent') ORDER BY 1, 2, run_id`,
      )
    ).rows.map((r) => `${r.w}/${r.a}${r.closed ? ` closed ${JSON.stringify(r.details)} ids ${r.ids}` : ''}`);
  expect(await rows()).toEqual(['wf-a/1 closed {} ids 0', 'wf-a/2 closed {} ids 0', 'wf-a/3', 'wf-b/1', 'wf-recent/1']);
  // A closed row's activity is over: its attempts are refused.
  await expect(progressOf(at('wf-a', '1', 2000)).resume(database())).rejects.toThrow('or the activity is over');
  // Closed rows go with the week's sweep; open ones stay (wf-a/3: claimed a week ago).
  await age('wf-a', SEND_PROGRESS_KEPT_DAYS + 1);
  await progressOf(at('wf-c', '1', 1000)).resume(database());
  expect(await rows()).toEqual(['wf-a/3', 'wf-b/1', 'wf-recent/1']);
});

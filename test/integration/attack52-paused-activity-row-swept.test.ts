import { SEND_PROGRESS_KEPT_DAYS } from '../../repository/send-progress';
import { chunkProgressOf as progressOf, progressDatabase, type AttemptOf } from '../support/progress-context';

const database = progressDatabase('attack52_paused');

/**
 * attack52 against a501095
 *
 * Invariant (1): under per_key each key's events reach the target in journal order, at most an event repeated back to
 * back, whatever point a worker dies and however long before the activity's retry runs.
 *
 * Attack: a per_key chunk's attempt sends one key's events 1, 2, 3 in three waves; the row has [1, 2] (written before
 * wave 3), the server recorded the beat after wave 1 only ([1]: a heartbeat is sent up to a second later, or never
 * when the worker dies). The worker dies after wave 3. The activity is not retried for more than
 * SEND_PROGRESS_KEPT_DAYS: an operator paused it (Temporal's PauseActivity where the server has it, `temporal activity pause`: no attempt is
 * scheduled until unpaused), or the workers were down that long. Meanwhile any per_key attempt of another workflow
 * makes its first write (the sweep). The activity is unpaused: its retry resumes.
 *
 * Observed: the sweep took the live activity's row (untouched for a week); the retry resumes from the beat ([1]) and
 * sends 2 and 3 again after 3: 1, 2, 3, 2, 3.
 *
 * Suspected cause: repository/send-progress.ts:23-27 and :106-109: the sweep assumes every live page activity is
 * retried (and resumes, touching its row) at least every 10 minutes; a paused activity, or a fleet down for the week,
 * is live without touching its row, and its row is deleted although the activity is not over (not closed).
 *
 * Fixed, in part: a week now deletes only closed rows (their activity over); an open row is deleted once nobody has
 * claimed it for SEND_PROGRESS_OPEN_DAYS (30), which this test's eight days stay under. An activity paused (or not run
 * by any worker) for longer than that still resumes from its heartbeat alone: documented (docs/integrity.md section
 * 9), not covered.
 */
it('the week’s sweep leaves the row of a paused (live) activity: its retry does not send 2 after 3', async () => {
  const at = (workflowId: string, attempt: number): AttemptOf => ({ workflowId, activityId: '1', attempt });
  const target: number[] = [];
  const first = progressOf(at('wf-paused', 1));
  await first.resume(database());
  const sent: number[] = [];
  for (const id of [1, 2, 3]) {
    await first.write(database(), { cursor: 0, pages: 0, pageSent: [...sent] });
    target.push(id);
    sent.push(id);
  }
  // Eight days without an attempt (paused), then another workflow's per_key attempt makes its first write.
  await database().query(
    `UPDATE send_progress SET updated_at = now() - $1 * interval '1 day' WHERE workflow_id = 'wf-paused'`,
    [SEND_PROGRESS_KEPT_DAYS + 1],
  );
  await progressOf(at('wf-other', 1)).resume(database()); // its claim sweeps

  const retry = progressOf(at('wf-paused', 2), { cursor: 0, pages: 0, pageSent: [1] });
  const resumed = await retry.resume(database());
  const from = resumed?.pageSent ?? [];
  for (const id of [1, 2, 3].filter((id) => !from.includes(id))) target.push(id);

  expect(target.filter((id, i) => id !== target[i - 1])).toEqual([1, 2, 3]);
});

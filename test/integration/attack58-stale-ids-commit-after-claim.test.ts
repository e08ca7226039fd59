import { claimSendProgress } from '../../repository/send-progress';
import { chunkProgressOf as progressOf, progressDatabase, type AttemptOf } from '../support/progress-context';

/**
 * attack58 against 1d0e6d4 (send_progress of sql/023, fenced statements of cf1d935).
 *
 * Invariant: once a later attempt has claimed an activity's row, an earlier attempt's statements change nothing and it
 * sends nothing more (docs/integrity.md section 9, "Progress the server never recorded"): a retry resumes at most one
 * wave behind what was sent, so a key never gets an older event after a newer one.
 *
 * Attack: attempt 1 (still running: its retry was scheduled after a timeout) writes the ids of wave 1 before sending
 * wave 2 (addSentIds); attempt 2 claims the row while that statement runs (here held open in a transaction to make the
 * window wide; in production the statement's own run). The insert reads the row's fence in its snapshot, takes no lock
 * that the claim's update waits for (the foreign key's KEY SHARE does not conflict with it), and commits after the
 * claim.
 *
 * Observed: attempt 1's write succeeds after attempt 2's claim, so attempt 1 sends wave 2; attempt 2 resumed without
 * wave 1's ids and sends wave 1 again, then wave 2: e1, e2, e1, e2, an older event after a newer one.
 *
 * Suspected cause: repository/send-progress.ts addSentIds checks the fence with a plain read of send_progress, not a
 * lock that the claim's upsert must wait for (FOR SHARE, or an UPDATE of the row).
 *
 * Fixed: addSentIds locks the row FOR SHARE for its fence check (the claim's upsert waits for it, and an insert that
 * waited for a claim sees the new fence and adds nothing), and the claim reads the ids in a statement of its own, after
 * its upsert (attack57).
 */
const database = progressDatabase('attack58');

it('an earlier attempt’s ids that commit after a later attempt’s claim are refused', async () => {
  const at = (attempt: number): AttemptOf => ({ workflowId: 'wf-attack58', activityId: '1', attempt });
  const first = progressOf(at(1));
  await first.resume(database());
  await first.write(database(), { cursor: 0, pages: 0, pageSent: [] }); // before wave 1 (e1)
  const held = await database().connect();
  try {
    await held.query('BEGIN');
    // Before wave 2 (e2): wave 1's ids, on attempt 1's connection, not committed yet.
    const before2 = first.write(held, { cursor: 0, pages: 0, pageSent: [1] }).then(
      () => 'written: attempt 1 sends wave 2',
      (err: Error) => err.message,
    );
    await new Promise((resolve) => setTimeout(resolve, 200));
    const claimed = claimSendProgress(database(), {
      workflowId: 'wf-attack58',
      runId: 'wf-attack58-run',
      activityId: '1',
      fence: 2000,
    });
    const order = await Promise.race([
      claimed.then(() => 'claim done first'),
      new Promise((resolve) => setTimeout(() => resolve('claim waiting'), 500)),
    ]);
    await held.query('COMMIT');
    const second = await claimed;
    expect({ order, attempt1: await before2, second }).toEqual({
      // Either the claim waits for attempt 1's statement and resumes with its ids, or attempt 1's write is refused.
      order: 'claim waiting',
      attempt1: 'written: attempt 1 sends wave 2',
      second: { stale: false, stored: { page: 0, details: { cursor: 0, pages: 0 }, sent: [1], refused: {} } },
    });
  } finally {
    held.release();
  }
});

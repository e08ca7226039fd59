import { chunkProgressOf as progressOf, progressDatabase, type AttemptOf } from '../support/progress-context';

/**
 * attack57 against 1d0e6d4 ("Attack55: a per_key retry decided its page's refusals again").
 *
 * Invariant: an event one attempt of a per_key page refused is never sent by a later attempt (docs/integrity.md
 * section 9, "A refusal decided again by a retry"): the page write that carries its refusals is fenced, and a retry's
 * claim resumes with them.
 *
 * Attack: attempt 1 of a chunk (still running: its retry was scheduled after a timeout) begins page 1 with its page
 * write, which carries the page's refusal (event 1, past the hop limit); attempt 2 claims the row while that statement
 * holds the row and has not committed yet (here held open in a transaction to make the window wide; in production the
 * few hundred microseconds between the page write's update and its commit). The claim waits for the row, then updates
 * it; the page write commits first, so it counts as written (true) and attempt 1 goes on to send its first wave.
 *
 * Observed: attempt 2 resumes at page 1 (the page write's page, read from the row it updated) without the page's
 * refusal (pageRefused absent), though the row holds it (a third claim sees it): the claim's ids come from the
 * statement's snapshot, taken before the page write committed, while its page comes from the latest row version (ON
 * CONFLICT DO UPDATE). A retry on a worker with a higher REPLAY_MAX_HOPS then decides event 1 again and sends it
 * after the newer event of its key that attempt 1's first wave sent: the order attack55 fixed.
 *
 * Suspected cause: repository/send-progress.ts claimSendProgress reads send_progress_sent in the same statement as its
 * upsert: the ids are the snapshot's, the page the locked row's.
 *
 * Fixed: the claim reads the ids in a statement of its own, after its upsert has committed (it sees what the page
 * write that it waited for committed).
 */
const database = progressDatabase('attack57');

it('a claim that waits for a page write resumes with the refusals that write committed', async () => {
  const at = (attempt: number): AttemptOf => ({ workflowId: 'wf-attack57', activityId: '1', attempt });
  const first = progressOf(at(1));
  await first.resume(database());
  await first.write(database(), { cursor: 0, pages: 0, pageSent: [] }); // page 0's first wave
  // Page 1's page write, with its refusal, held uncommitted on its own connection.
  const held = await database().connect();
  try {
    await held.query('BEGIN');
    await first.write(held, { cursor: 10, pages: 1, pageSent: [], pageRefused: { hops: [1] } });
    const claimed = progressOf(at(2)).resume(database());
    await new Promise((resolve) => setTimeout(resolve, 300)); // the claim is waiting for the row
    await held.query('COMMIT');
    expect({
      second: await claimed,
      third: await progressOf(at(3)).resume(database()),
    }).toEqual({
      second: { cursor: 10, pages: 1, pageRefused: { hops: [1] } },
      third: { cursor: 10, pages: 1, pageRefused: { hops: [1] } },
    });
  } finally {
    held.release();
  }
});

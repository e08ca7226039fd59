import {
  chunkProgressOf as progressOf,
  progressDatabase,
  waveSender,
  type AttemptOf,
} from '../support/progress-context';

const database = progressDatabase('attack53_first_wave');

/**
 * attack53 against 24c188c
 *
 * Invariant (1): under per_key each key's events reach the target in journal order, at most its last event repeated
 * back to back, whatever attempt is stale (the DB fence is the second guard after the attempt lease: a stale attempt's
 * write before a wave is refused and its wave not sent; attack52-resume-takes-no-fence).
 *
 * Attack: page 0 is one key's events 1, 2, 3 (three waves). Attempt 1 writes page 0, sends 1, writes [1] and dies
 * before wave 2. Attempt 2 resumes from the row (page 0, [1]) and then stalls before its first wave (the page read,
 * the erasures' barrier, the previous send awaited: the same window as attack52) while the server times it out.
 * Attempt 3 claims (later fence), resumes from the same row, sends 2, writes [1, 2], sends 3. Attempt 2, still
 * running on its worker (the lease did not stop it, as in attack52), reaches its first wave: it makes its progress
 * "durable" and sends 2.
 *
 * Observed: the key gets 1, 2, 3, 2 — 2 after 3. The stale attempt 2's write before its first wave is accepted: it
 * makes no statement at all (the row already holds page 0 and [1], what it resumed from), so the fence attempt 3
 * took is never checked before attempt 2's first wave goes out.
 *
 * Suspected cause: activities/durable-progress.ts:112 and :121-128: resume from the row sets `written` to the row's
 * page and id count, and write() then issues neither writeSendPage (same page) nor addSentIds (no new ids) for the
 * first wave after a resume from the row; the only fenced statement before that wave was the claim, made before the
 * stall (repository/send-progress.ts claimSendProgress). Every wave needs one fenced statement before it, including
 * the first after a resume.
 *
 * Fixed: an attempt's first write is always a fenced page write (activities/durable-progress.ts `fenced`), even when
 * resumed from the row with nothing new to add: attempt 2, claimed over by attempt 3, is refused before it sends 2.
 */
it('an attempt resumed from the row sends its first wave unfenced after a later attempt claimed: 2 after 3', async () => {
  const at = (attempt: number): AttemptOf => ({ workflowId: 'wf-first-wave', activityId: '1', attempt });
  const waves = [[1], [2], [3]]; // one key's events 1, 2, 3
  const target: number[] = [];
  const attempt = waveSender(database, waves, target);

  const first = progressOf(at(1));
  await first.resume(database());
  await attempt(first, [], 1); // writes page 0, sends 1
  await first.write(database(), { cursor: 0, pages: 0, pageSent: [1] }); // the write before wave 2; then it dies

  const stale = progressOf(at(2));
  const staleFrom = await stale.resume(database());
  expect(staleFrom).toEqual({ cursor: 0, pages: 0, pageSent: [1] }); // claimed, then stalls before its first wave

  const live = progressOf(at(3));
  const liveFrom = await live.resume(database());
  expect(liveFrom).toEqual({ cursor: 0, pages: 0, pageSent: [1] });
  await attempt(live, liveFrom?.pageSent ?? [], 2); // sends 2, writes [1, 2], sends 3

  await attempt(stale, staleFrom?.pageSent ?? [], 1); // attempt 2 reaches its first wave

  // In journal order, an event at most repeated back to back: collapsed, 1, 2, 3.
  expect(target.filter((id, i) => id !== target[i - 1])).toEqual([1, 2, 3]);
});

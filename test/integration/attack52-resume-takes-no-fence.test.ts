import {
  chunkProgressOf as progressOf,
  progressDatabase,
  waveSender,
  type AttemptOf,
} from '../support/progress-context';

const database = progressDatabase('attack52_resume_fence');

/**
 * attack52 against a501095
 *
 * Invariant (1): under per_key each key's events reach the target in journal order, at most its last event repeated
 * back to back, whatever attempt is stale (docs/integrity.md section 9: the DB fence is the second guard after the
 * attempt lease: "a stale attempt's write is refused and its wave not sent").
 *
 * Attack: attempt 1 of a chunk is stale (its retry has begun) but still writing and sending (the lease, the first
 * guard, did not stop it). Page 0 is one key's events 1, 2, 3 (three waves). Attempt 1 has written page 0 and sent 1
 * when attempt 2 resumes: the row has page 0, nothing sent yet recorded (the write before wave 2 is not made). Attempt
 * 1 then writes [1] and [1, 2] — accepted, the row still has its fence: attempt 2 has read but not written — and
 * sends 2 and 3. Attempt 2 then makes its first write (accepted: later fence) and sends from what it read: 1, 2, 3.
 *
 * Observed: the key gets 1, 2, 3, 1, 2, 3 — 1 after 3. A retry's resume reads the row without taking it: the stale
 * attempt keeps writing and sending, unfenced, from the retry's read until its first write (the page read, the
 * erasures' barrier, the previous send awaited), and the retry resends what it sent meanwhile. Had the resume taken
 * the fence, attempt 1's writes would be refused and the key would get 1, 1, 2, 3.
 *
 * Suspected cause: repository/send-progress.ts:36-52 (resumeSendProgress touches updated_at but does not set the
 * row's fence to the resuming attempt's) with activities/durable-progress.ts:97-107 (resume does not fence; only
 * the attempt's first write does, later).
 *
 * Fixed: a resume claims the row (claimSendProgress sets the fence to the attempt's): attempt 1's write before its
 * second wave is refused, and 2 and 3 are not sent by it.
 */
it('a stale attempt writes and sends between its retry’s resume and the retry’s first write: 1 after 3', async () => {
  const at = (attempt: number): AttemptOf => ({ workflowId: 'wf-resume-fence', activityId: '1', attempt });
  const waves = [[1], [2], [3]]; // one key's events 1, 2, 3
  const target: number[] = [];
  const attempt = waveSender(database, waves, target);

  const stale = progressOf(at(1));
  await stale.resume(database());
  await attempt(stale, [], 1); // sends 1
  const retry = progressOf(at(2));
  const resumed = await retry.resume(database());
  expect(resumed).toEqual({ cursor: 0, pages: 0 }); // the row: page 0 begun, nothing sent recorded yet
  await attempt(stale, [1], 2); // attempt 1 goes on: writes [1], sends 2, writes [1, 2], sends 3
  await attempt(retry, resumed?.pageSent ?? [], 3);

  // In journal order, an event at most repeated back to back: collapsed, 1, 2, 3.
  expect(target.filter((id, i) => id !== target[i - 1])).toEqual([1, 2, 3]);
});

import type { QueryResult, QueryResultRow } from 'pg';
import { PROGRESS_SILENCE_MS } from '../../activities/durable-progress';
import type { Queryable } from '../../repository/queryable';
import { keyWaves } from '../../activities/ordered-publish';
import type { OutgoingEvent } from '../../activities/replay-messages';
import { chunkProgressOf as progressOf, progressDatabase, type AttemptOf } from '../support/progress-context';

/**
 * attack52 against a501095: statements of durable progress (repository/send-progress.ts) that run without the fence,
 * on Postgres. Each test's own comment has its invariant, attack, observation and suspected cause. Fixed (each):
 * every statement that changes an activity's rows is one statement fenced by the attempt's scheduled time, and the
 * closing of earlier activities' rows happens in the claim an attempt makes as it resumes, only for rows scheduled
 * before it and only when the claim succeeds (repository/send-progress.ts claimSendProgress). Tests adapted: an
 * attempt resumes (claims) before it writes, as the activities do; the held statements are the new ones.
 */
const database = progressDatabase('attack52_progress');

/**
 * A connection on which the statement starting with `prefix` is held until released (a worker cut off from Postgres
 * whose statement arrives late, or one waiting on a lock): the attempt's write times out (PROGRESS_SILENCE_MS) and
 * the attempt fails, while the statement still runs afterwards.
 */
function heldConnection(target: () => Queryable, prefix: string) {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let reached!: () => void;
  const arrived = new Promise<void>((resolve) => (reached = resolve));
  let ran!: () => void;
  const done = new Promise<void>((resolve) => (ran = resolve));
  const db: Queryable = {
    async query<R extends QueryResultRow = QueryResultRow>(text: string, values?: unknown[]): Promise<QueryResult<R>> {
      if (text.trimStart().startsWith(prefix)) {
        reached();
        await gate;
        const result = await target().query<R>(text, values);
        ran();
        return result;
      }
      return target().query<R>(text, values);
    },
  };
  return { db, arrived, release: () => (release(), done) };
}

const event = (id: number, key: string): OutgoingEvent =>
  ({ id, message: { topic: 't', key: Buffer.from(key), value: Buffer.from(String(id)) } }) as unknown as OutgoingEvent;

/**
 * attack52 against a501095
 *
 * Invariant (1): under per_key each key's events reach the target in journal order, at most its last event repeated
 * back to back, whatever point a worker is cut off from Postgres or an attempt is stale. (4): a Postgres failure fails
 * the attempt before its wave, and leaves durable progress that claims no less than was sent.
 *
 * Attack: attempt 1 of a chunk writes page 0 (its upsert commits), its next statement — the DELETE of the ids of the
 * activity's other pages — is held (the worker is cut off from Postgres, TCP delivers it later): the write times out
 * after PROGRESS_SILENCE_MS and attempt 1 fails before its wave, as intended. Attempt 2 (later fence) resumes, ends
 * page 0, begins page 1 (events 21, 22, 23 of one key: three waves) and writes the ids of waves 1 and 2 before wave 3.
 * Then attempt 1's DELETE arrives: `page <> 0`, no fence in it. Attempt 2 dies during wave 3 (cut off from Temporal:
 * its heartbeats of page 1 were never recorded, the beat the server has is page 0's).
 *
 * Observed: attempt 3 resumes at page 1 with no id sent: it sends 21 again after 22 (and 23) reached the target — an
 * older event of the key after a newer one.
 *
 * Suspected cause: repository/send-progress.ts:73-77 (writeSendPage's DELETE of other pages' ids is a second
 * statement, unfenced and outside the upsert's transaction) with activities/durable-progress.ts:111-122 (after
 * `bounded` rejects, the inner writes keep running: the timed-out attempt's statements still reach Postgres).
 *
 * Fixed: see the file's comment.
 */
it('a timed-out attempt’s late DELETE of other pages’ ids takes its retry’s progress: an older event after a newer one', async () => {
  const at = (attempt: number): AttemptOf => ({ workflowId: 'wf-late-delete', activityId: '1', attempt });
  const held = heldConnection(database, 'WITH written AS');
  const attempt1 = progressOf(at(1));
  await attempt1.resume(database());
  const first = attempt1.write(held.db, { cursor: 0, pages: 0, pageSent: [] });
  await held.arrived;
  await expect(first).rejects.toThrow(`Postgres did not answer in ${PROGRESS_SILENCE_MS} ms`);

  // Attempt 2: resumes (attempt 1's page write has not arrived: nothing written), sends page 0 (events 1, 2) and page
  // 1 of one key.
  const retry = progressOf(at(2));
  expect(await retry.resume(database())).toBeUndefined();
  await retry.write(database(), { cursor: 0, pages: 0, pageSent: [] });
  const target: number[] = [1, 2]; // page 0 sent (one wave)
  const page1 = [event(21, 'K'), event(22, 'K'), event(23, 'K')];
  const sent: number[] = [];
  for (const wave of keyWaves(page1)) {
    await retry.write(database(), { cursor: 2, pages: 1, pageSent: [...sent] });
    if (sent.length === 2) await held.release(); // attempt 1's DELETE arrives before wave 3
    target.push(...wave.map((e) => e.id));
    sent.push(...wave.map((e) => e.id));
  }

  // Attempt 3: the server's beat is the one after page 0 (attempt 2's later beats never reached it).
  const resumed = await progressOf(at(3), { cursor: 2, pages: 1 }).resume(database());
  const skip = new Set(resumed?.pageSent ?? []);
  for (const wave of keyWaves(page1.filter((e) => !skip.has(e.id)))) target.push(...wave.map((e) => e.id));

  // Key K: 21, 22, 23 in order, an event at most repeated back to back.
  const ofK = target.filter((id) => id > 20);
  expect(ofK.filter((id, i) => id !== ofK[i - 1])).toEqual([21, 22, 23]);
});

/**
 * attack52 against a501095
 *
 * Invariant (3): bounded, a replay makes progress while Kafka and Postgres answer; an attempt is refused only when it
 * is stale (a later attempt of its activity ran), never the live attempt of the workflow's current activity.
 *
 * Attack: attempt 1 of activity 1 makes its first write: the upsert commits, the closing of the workflow's other rows
 * (closeOtherSendProgress) is held; the write times out and attempt 1 fails. Attempt 2 of activity 1 completes the
 * activity; activity 2 begins (its first write closes activity 1's row). Then attempt 1's held UPDATE arrives: it
 * closes every row of the workflow but activity 1's — activity 2's, live — with no fence in it.
 *
 * Observed: activity 2's next wave is refused as stale ("or the activity is over"), and so is every retry of it
 * (its row is closed: no write can take it again): the replay cannot get past activity 2.
 *
 * Suspected cause: repository/send-progress.ts:97-105 (closeOtherSendProgress closes by workflow id, without
 * checking that the closing attempt still holds its own row / is the workflow's latest activity), run after the fenced
 * upsert as a separate statement (activities/durable-progress.ts:116), and still run after `bounded` rejected.
 *
 * Fixed: see the file's comment.
 */
it('a timed-out attempt’s late close of its workflow’s other rows closes the live activity’s row: it never writes again', async () => {
  const at = (activityId: string, attempt: number, scheduledMs: number): AttemptOf => ({
    workflowId: 'wf-late-close',
    activityId,
    attempt,
    scheduledMs,
  });
  const held = heldConnection(database, 'WITH later AS');
  const first = progressOf(at('1', 1, 1000)).resume(held.db);
  await held.arrived;
  await expect(first).rejects.toThrow(`Postgres did not answer in ${PROGRESS_SILENCE_MS} ms`);

  const second = progressOf(at('1', 2, 3000));
  await second.resume(database());
  await second.write(database(), { cursor: 0, pages: 0, pageSent: [] });
  const live = progressOf(at('2', 1, 10_000));
  await live.resume(database());
  await live.write(database(), { cursor: 500, pages: 0, pageSent: [] });
  await held.release();

  await expect(live.write(database(), { cursor: 500, pages: 0, pageSent: [501] })).resolves.toBeUndefined();
  const retry = progressOf(at('2', 2, 20_000), { cursor: 500, pages: 0, pageSent: [501] });
  await retry.resume(database());
  await expect(retry.write(database(), { cursor: 500, pages: 0, pageSent: [501] })).resolves.toBeUndefined();
});

/**
 * attack52 against a501095
 *
 * Invariants (1) and (3): a stale attempt's write is refused and its wave not sent (docs/integrity.md section 9: the
 * DB fence is the second guard after the attempt lease); the live activity of the workflow is never refused.
 *
 * Attack: activity 1 of a workflow has no row: none of its attempts that ran wrote one (its retry found nothing to send
 * — the page's events erased, or refused — and completed; or every attempt that got as far as a wave is the stale one).
 * Activity 2 begins and writes. Attempt 1 of activity 1, stale (cut off from Temporal, the lease lost or outlived),
 * reaches its first wave and writes.
 *
 * Observed: the stale write is accepted (INSERT of a fresh row: there is no row, so no fence and no `closed`), its wave
 * would be sent after activity 2's newer events, and its first write closes activity 2's row: activity 2's next wave
 * and every retry of it are refused.
 *
 * Suspected cause: repository/send-progress.ts:64-71 (the upsert inserts a row for an activity whose workflow has moved
 * on: only an existing row fences) and :97-105 (closeOtherSendProgress closes the live activity's row, whose
 * activity id is later than the writer's).
 *
 * Fixed: see the file's comment.
 */
it('a stale attempt of an activity that never wrote is accepted and closes the live activity’s row', async () => {
  const at = (activityId: string, attempt: number, scheduledMs: number): AttemptOf => ({
    workflowId: 'wf-no-row',
    activityId,
    attempt,
    scheduledMs,
  });
  const live = progressOf(at('2', 1, 10_000));
  await live.resume(database());
  await live.write(database(), { cursor: 500, pages: 0, pageSent: [] });

  const stale = progressOf(at('1', 1, 1000));
  const staleWrite = stale
    .resume(database())
    .then(() => stale.write(database(), { cursor: 0, pages: 0, pageSent: [] }));
  const liveNext = staleWrite
    .catch(() => undefined)
    .then(() => live.write(database(), { cursor: 500, pages: 0, pageSent: [501] }));
  const outcomes = await Promise.allSettled([staleWrite, liveNext]);
  expect(outcomes.map((o) => o.status)).toEqual(['rejected', 'fulfilled']);
});

/**
 * attack52 against a501095
 *
 * Invariants (1) and (3), as above, across a workflow reset: the run reset from is over, its attempts stale.
 *
 * Attack: run R1's chunk attempt has read its page and waits (the erasures' barrier, a previous send) before its first
 * write when an operator resets the workflow (`temporal workflow reset`): run R2 replays the range, its chunk writes.
 * R1's attempt, not yet told (its next heartbeat would tell it), makes its first write.
 *
 * Observed: R1's write is accepted — R1's activity has no row, so nothing fences it — and it closes R2's row: R2's
 * next wave and every retry of it are refused, while R1's stale attempt sends its waves.
 *
 * Suspected cause: repository/send-progress.ts:64-71 and :97-105, as above: a run's rows are closed by any first write
 * of its workflow, the older run's included.
 *
 * Fixed: see the file's comment.
 */
it('a reset-from run’s attempt without a row is accepted and closes the reset run’s live row', async () => {
  const at = (runId: string, scheduledMs: number): AttemptOf => ({
    workflowId: 'wf-reset',
    runId,
    activityId: '5',
    attempt: 1,
    scheduledMs,
  });
  const live = progressOf(at('wf-reset-R2', 60_000));
  await live.resume(database());
  await live.write(database(), { cursor: 500, pages: 0, pageSent: [] });

  const stale = progressOf(at('wf-reset-R1', 1000));
  const staleWrite = stale
    .resume(database())
    .then(() => stale.write(database(), { cursor: 500, pages: 0, pageSent: [] }));
  const liveNext = staleWrite
    .catch(() => undefined)
    .then(() => live.write(database(), { cursor: 500, pages: 0, pageSent: [501] }));
  const outcomes = await Promise.allSettled([staleWrite, liveNext]);
  expect(outcomes.map((o) => o.status)).toEqual(['rejected', 'fulfilled']);
});

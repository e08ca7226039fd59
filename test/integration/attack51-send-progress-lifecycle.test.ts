import { chunkShape, durableProgress } from '../../activities/durable-progress';
import type { RangeChunkResult } from '../../activities/range';
import { preparePage } from '../../activities/replay-messages';
import { replayTransform } from '../../journal/transform';
import type { ReplayRow } from '../../repository/event-journal';
import { redactOperatorCopies } from '../../repository/erasure-redaction';
import { SEND_PROGRESS_KEPT_DAYS } from '../../repository/send-progress';
import { keptFailures } from '../../workflows/replay-options';
import {
  chunkProgressOf as progressOf,
  progressContext,
  progressDatabase,
  type AttemptOf,
  type ChunkTestProgress,
} from '../support/progress-context';

/**
 * attack51 against 1ba976e: the lifecycle of send_progress rows (sql/023), on Postgres. Each test's own comment has its
 * invariant, attack, observation and fix.
 */
const database = progressDatabase('attack51_progress');

/**
 * attack51 against 1ba976e
 *
 * Invariant: every event of a replay reaches the target (the replay makes progress while Kafka and Postgres answer);
 * an attempt is refused only when it is stale, i.e. a later attempt of its activity is running or ran
 * (docs/integrity.md section 9: "an attempt that finds a later attempt's row is stale (cut off, its retry already
 * running)").
 *
 * Attack: Temporal's ResetActivity (`temporal activity reset`, workflowservice ResetActivity: "number of attempts will
 * be reset") — the operator's tool for an activity stuck in long backoff — restarts the attempt counter of the SAME
 * activity (same run id, same activity id) at 1. A per_key chunk whose attempt 7 wrote send_progress (Kafka was down
 * for a while, pageOptions backing off up to 10 min) is reset by an operator; the next attempt is attempt 1.
 *
 * Observed: attempt 1 (and every attempt up to 6) finds the row of "attempt 7" and is refused as stale: it throws
 * before its first wave and sends nothing, although no other attempt runs. The replay makes no progress until the
 * counter climbs past the row's attempt again (under pageOptions' backoff: 1+2+4+…s then 10 min per attempt; an
 * activity reset at attempt 30 is stuck for about 3 hours; a batch page (publishOptions, 25 attempts) reset after its
 * attempt 25 wrote gets a single usable attempt).
 *
 * Suspected cause: repository/send-progress.ts:35-44 orders attempts by `info.attempt`, which is not monotonic per
 * (run_id, activity_id) (activities/ordered-publish.ts:157-163, 179-185).
 *
 * Fixed: attempts are ordered by their scheduled time (`fence`, Info.currentAttemptScheduledTimestampMs), later for
 * a reset's attempts than for any before it.
 */
it('the first attempt after an activity reset sends (no later attempt is running)', async () => {
  const at = (attempt: number, scheduledMs: number): AttemptOf => ({
    workflowId: 'attack51-reset',
    activityId: '5',
    attempt,
    scheduledMs,
  });
  // Attempt 7 wrote before its wave, then its send failed (the broker down); the attempt ended.
  const before = progressOf(at(7, 7_000));
  await before.resume(database());
  await before.write(database(), { cursor: 100, pages: 2, pageSent: [101] });

  // The operator resets the activity: same run, same activity id, attempt 1 (scheduled now); heartbeat details kept.
  const afterReset = progressOf(at(1, 9_000), { cursor: 100, pages: 2, pageSent: [101] });
  expect(await afterReset.resume(database())).toEqual({ cursor: 100, pages: 2, pageSent: [101] });
  await expect(afterReset.write(database(), { cursor: 100, pages: 2, pageSent: [101] })).resolves.toBeUndefined();
});

/**
 * attack51 against 1ba976e
 *
 * Invariant (docs/integrity.md section 9, "Progress the server never recorded"; sql/023): rows are written by attempt
 * number, "an attempt that finds a later attempt's row is stale (cut off, its retry already running), its write is
 * refused and its wave is not sent" — an attempt never writes over, or sends behind, a later attempt of its activity.
 *
 * Attack: activity 1 of a per_key replay: attempt 1 is cut off mid-page (still running, its heartbeats lost); attempt
 * 2 resumes, writes its progress (attempt 2) and completes; the workflow schedules activity 2 (the next chunk), whose
 * first write deletes every other row of the workflow (dropOtherSendProgress), activity 1's included. Attempt 1 of
 * activity 1 now reaches its next wave and writes its progress.
 *
 * Observed: the write is accepted (no row to conflict with: a plain INSERT of attempt 1), so attempt 1 sends its wave
 * — events of activity 1's page, older than the ones activity 2 is sending for the same keys. The refusal only holds
 * while the later attempt's row exists, and the next activity's first write removes it.
 *
 * Suspected cause: repository/send-progress.ts:51-59 (dropOtherSendProgress deletes the finished activity's row, which
 * is the only record that attempt 2 ran) with repository/send-progress.ts:35-44 (writeSendProgress inserts when no row
 * exists, whatever the attempt); activities/ordered-publish.ts:179-186. (The attempt lease is the first guard against
 * such a late attempt; this is the second one the docs describe, and it evaporates.)
 *
 * Fixed: the next activity's first write closes the finished activity's row (emptied, kept as a fence for
 * SEND_PROGRESS_KEPT_DAYS) instead of deleting it; a write or ids added to a closed row are refused.
 */
it('a stale attempt stays refused after its activity completed and the next activity began', async () => {
  const at = (activityId: string, attempt: number): AttemptOf => ({
    workflowId: 'attack51-stale',
    activityId,
    attempt,
  });

  // Activity 1, attempt 1: writes before its first wave (ids 1, 2 of page after cursor 0), then is cut off.
  const stale = progressOf(at('1', 1));
  await stale.resume(database());
  await stale.write(database(), { cursor: 0, pages: 0, pageSent: [] });

  // Attempt 2 resumes from the row, sends the rest of the chunk, and completes.
  const retry = progressOf(at('1', 2));
  expect(await retry.resume(database())).toEqual({ cursor: 0, pages: 0 });
  await retry.write(database(), { cursor: 0, pages: 0, pageSent: [1] });
  await retry.write(database(), { cursor: 10, pages: 1, pageSent: [] });

  // Still refused while activity 1's row is there.
  await expect(stale.write(database(), { cursor: 0, pages: 0, pageSent: [1] })).rejects.toThrow(/A later attempt of/);

  // Activity 2 (the next chunk) starts: its first write closes activity 1's row.
  const next = progressOf({ ...at('2', 1), scheduledMs: 10_000 }); // scheduled once activity 1 completed
  await next.resume(database());
  await next.write(database(), { cursor: 20, pages: 0, pageSent: [] });

  // Attempt 1 of activity 1, still running, reaches its next wave: it must not be allowed to send.
  await expect(stale.write(database(), { cursor: 0, pages: 0, pageSent: [1] })).rejects.toThrow(/A later attempt of/);
  // Nor may a fresh write of its page (a page change) take the closed row.
  await expect(stale.write(database(), { cursor: 5, pages: 1, pageSent: [] })).rejects.toThrow(/A later attempt of/);
});

/**
 * attack51 against 1ba976e
 *
 * Invariant (repository/send-progress.ts:16-17: "Rows nobody has written for this long belong to activities long over
 * (a live one's every attempt writes)"; docs/integrity.md section 9): the sweep deletes no row a still-retrying activity
 * resumes from; a retry resumes at most one wave back from what was sent.
 *
 * Attack: a per_key chunk's attempt is cut off after sending waves whose heartbeat never reached the server; only its
 * send_progress row records them. Its retries then fail BEFORE their first wave, for more than
 * SEND_PROGRESS_KEPT_DAYS: each resumes (reads the row) and fails reading its page (the journal read past
 * statement_timeout, or, in the archive pass, the archive store refusing the worker's credentials) — pageOptions retry
 * forever, backing off to 10 minutes. Not every live attempt writes: only those that reach a wave. Meanwhile any
 * other per_key replay's first write sweeps rows not written for 7 days.
 *
 * Observed: the live activity's row is swept although its attempts kept reading it; its next attempt resumes from
 * the heartbeat the server recorded, behind what was sent, and resends those waves: a key's older event after a
 * newer one (the attack47 outcome the row exists to prevent).
 *
 * Suspected cause: repository/send-progress.ts:51-59 sweeps by `updated_at`, which only writes refresh
 * (repository/send-progress.ts:35-44); readSendProgress (used by every attempt's resume) does not refresh it.
 *
 * Fixed: every resume touches the row (resumeSendProgress updates updated_at): an activity still retrying keeps it.
 */
it('a row its retrying activity keeps resuming from is not swept', async () => {
  const at = (attempt: number): AttemptOf => ({ workflowId: 'attack51-sweep', activityId: '4', attempt });
  // Attempt 1 sent waves of ids 11, 12, 13; its last write (before the wave of 13) recorded [11, 12]. The server
  // recorded only the heartbeat after the wave of 11.
  const recorded: ChunkTestProgress = { cursor: 10, pages: 1, pageSent: [11] };
  const first = progressOf(at(1));
  await first.resume(database());
  await first.write(database(), { cursor: 10, pages: 1, pageSent: [11, 12] });
  // Its retries failed before their first wave for longer than the sweep's age: the row was written that long ago.
  await database().query(`UPDATE send_progress SET updated_at = now() - ($1 + 1) * interval '1 day'`, [
    SEND_PROGRESS_KEPT_DAYS,
  ]);
  // The latest of them (attempt 300) resumed from the row, then failed reading its page.
  expect(await progressOf(at(300), recorded).resume(database())).toEqual({ cursor: 10, pages: 1, pageSent: [11, 12] });

  // Another per_key replay's attempt writes for the first time: its sweep.
  await progressOf({ workflowId: 'attack51-other', activityId: '1', attempt: 1 }).resume(database()); // its claim sweeps

  // Attempt 301 (the page readable again) must resume past id 12, not from the recorded heartbeat.
  expect(await progressOf(at(301), recorded).resume(database())).toEqual({ cursor: 10, pages: 1, pageSent: [11, 12] });
});

/**
 * attack51 against 1ba976e
 *
 * Invariant (docs/lifecycle.md, erasure): once an erasure of a subject has completed, no table holds the subject's
 * value ("no value in any table or archive file"; step 5 redacts the copies kept outside the journal and the DLQ,
 * repository/erasure-redaction.ts).
 *
 * Attack: a per_key range replay with a transform over a lead whose id is a 30-digit JSON number (the erasure suites'
 * own example). The transform refuses that payload, quoting the number ("the payload holds the number …", journal/
 * transform.ts:71); the chunk keeps the reason in its progress (RangeChunkResult.transformFailed, activities/range.ts
 * keptFailures), and before the first wave of its next page durableProgress writes that progress, reason included, to
 * send_progress (activities/ordered-publish.ts:123). The subject is then erased: its journal rows deleted, and the
 * operator copies redacted (redactOperatorCopies, the erasure's step 5, run here as activities/erasure.ts:215 does).
 *
 * Observed: send_progress still holds the lead id. The row is the workflow's last per_key activity's (or any one of a
 * failed, cancelled replay): nothing deletes it but the 7-day sweep, which runs only when some other per_key attempt
 * writes, so with no later per_key replay it stays for good. The erasure neither redacts nor deletes it, and the
 * erasure's own audit reports it complete.
 *
 * Suspected cause: activities/ordered-publish.ts:123 writes the whole chunk progress (`{ ...progress, pageSent }`, with
 * transformFailed reasons) to send_progress; repository/erasure-redaction.ts:9-14 (COPIES) does not list send_progress;
 * docs/lifecycle.md does not mention the table.
 *
 * Fixed: send_progress keeps no refusal reason (chunkShape.rest leaves transformFailed out; a resume takes them from
 * the heartbeat), and a closed row is emptied. The same reasons in Temporal histories: noted, not covered here.
 */
const LEAD_ID = '123456789012345678901234567890';

const row = (id: number, payload_text: string): ReplayRow => ({
  id,
  tenant_id: 'acme',
  topic: 'apexflow.leads.created',
  replay_count: 0,
  payload_text,
  kafka_key: null,
  kafka_key_bytes: Buffer.from(`lead-${id}`),
  kafka_headers: null,
  legacy: false,
});

it('an erasure leaves no send_progress row holding the subject’s value', async () => {
  const input = {
    source: 'range',
    replayId: 'attack51-erasure',
    ordering: 'per_key' as const,
    transform: replayTransform([{ op: 'add', path: '/channel', value: 'replayed' }]),
  };
  // Page 1 of the chunk (cursor 0 → 2): the subject's lead, and a neighbour the transform applies to.
  const page1 = [row(1, `{"lead_id": ${LEAD_ID}, "tenant_id": "acme"}`), row(2, '{"lead_id": 7, "tenant_id": "acme"}')];
  const prepared = preparePage(page1, input, Buffer.from('lineage-key'), 5, {
    refusal: () => undefined,
    countEarlier: () => undefined,
  });
  expect(prepared.transformFailed.map((f) => f.id)).toEqual([1]);
  // The chunk's progress after page 1, as replayRangePage builds it (activities/range.ts).
  const transformFailed = keptFailures(undefined, prepared.transformFailed);
  const before: RangeChunkResult = {
    cursor: 2,
    read: 2,
    published: prepared.outgoing.length,
    failed: prepared.transformFailed.length,
    done: false,
    pages: 1,
    ...(transformFailed ? { transformFailed } : {}),
  };
  // Page 2's first wave: publishChunkPage's beforeWave writes the progress before it.
  const at: AttemptOf = { workflowId: 'attack51-erasure', activityId: '3', attempt: 1 };
  const chunk = durableProgress<RangeChunkResult>(progressContext(at), chunkShape());
  await chunk.resume(database());
  await chunk.write(database(), {
    ...before,
    pageSent: [],
  });

  // The erasure of the lead: its step 5, redacting the copies outside the journal and the DLQ.
  await redactOperatorCopies(database(), LEAD_ID);

  const { rows } = await database().query<{ details: unknown }>(
    'SELECT details FROM send_progress WHERE strpos(details::text, $1) > 0',
    [LEAD_ID],
  );
  expect(rows).toEqual([]);
  // A retry still reports the refusal: from its heartbeat details (Temporal's), not from the row.
  const retry = durableProgress<RangeChunkResult>(progressContext({ ...at, attempt: 2 }, before), chunkShape());
  expect(await retry.resume(database())).toEqual(before);
});

import type { Context } from '@temporalio/activity';
import type { Producer } from 'kafkajs';
import { chunkShape, durableProgress } from '../../activities/durable-progress';
import { publishChunkPage } from '../../activities/ordered-publish';
import { answeringPool } from '../support/answering-pool';
import { sendProgressTable } from '../support/send-progress-table';

/**
 * attack50 against 1ba976e ("per_key progress written to Postgres before every wave").
 *
 * Invariant: under per_key ordering nothing is lost and nothing hangs beyond documented bounds (docs/integrity.md
 * section 9, section 5); only a stale attempt (cut off, its retry already running) has its progress write refused.
 *
 * Attack: an operator resets a per_key range chunk activity (`temporal activity reset`, or the UI's Reset: "The attempt
 * count resets to 1", docs.temporal.io/activity-operations/reset), e.g. after a long Kafka outage, to retry at once
 * instead of waiting out a 10-minute backoff. Its attempt 6, before the reset, had sent wave 1 of a page (e1 of key a)
 * and written its progress before wave 2. The attempts after the reset are numbered 1, 2, 3…, and each is the one
 * attempt the server has pending (not stale).
 *
 * Observed: every post-reset attempt below 6 resumes correctly from the row, then its write before wave 2 is refused
 * ("A later attempt than 1 … has written its progress: this one sends nothing more") and it sends nothing; the chunk
 * makes no progress until its attempt number passes the pre-reset one: with pageOptions' backoff (1 s doubling to
 * 10 min) a reset after N attempts stalls the replay for about sum(min(2^k s, 10 min)), k < N - 1 (over an hour for
 * N = 15), exactly what the reset was meant to skip. Expected: the first post-reset attempt sends e2.
 *
 * Suspected cause: repository/send-progress.ts:35-41 (writeSendProgress) orders writers by Temporal's attempt number
 * (`WHERE send_progress.attempt <= EXCLUDED.attempt`), fed from activities/ordered-publish.ts:162 (info.attempt), and
 * that number is not monotonic across an activity reset; the row outlives the reset (keyed by run and activity id).
 *
 * Fixed: attempts are ordered by their scheduled time (Info.currentAttemptScheduledTimestampMs, `fence` in
 * send_progress), which a reset's attempts have later than any before it, not by their number.
 */

const TOPIC = 't';

/**
 * A Context as far as durableProgress and publishChunkPage read it: attempt `attempt` of the same activity, scheduled
 * at `scheduledMs` (the server's clock: every attempt is scheduled after the one before, a reset's too).
 */
const ctxOf = (attempt: number, scheduledMs: number, heartbeatDetails?: unknown) =>
  ({
    info: {
      workflowExecution: { workflowId: 'range-replay-wf', runId: 'run-1' },
      activityId: '7',
      attempt,
      currentAttemptScheduledTimestampMs: scheduledMs,
      heartbeatDetails,
    },
    heartbeat: () => undefined,
    cancellationSignal: new AbortController().signal,
  }) as unknown as Context;

type Progress = { cursor: number; pages: number; pageSent?: number[] };

it('an attempt after an activity reset (attempt count back to 1) is not refused as stale', async () => {
  const table = sendProgressTable();
  const pool = answeringPool(10, table.answer);
  const topic: string[] = [];
  const producer = {
    sendBatch: async ({ topicMessages }: { topicMessages: { messages: { value: string }[] }[] }) => {
      for (const t of topicMessages) for (const m of t.messages) topic.push(m.value);
      return [];
    },
  } as unknown as Producer;
  const outgoing = [1, 2].map((id) => ({
    id,
    message: { topic: TOPIC, key: Buffer.from('a'), value: `e${id}`, headers: {} },
  }));
  let scheduledMs = 1_000;
  const attempt = async (n: number, heartbeatDetails?: Progress) => {
    const ctx = ctxOf(n, (scheduledMs += 1_000), heartbeatDetails);
    const durable = durableProgress<Progress>(ctx, chunkShape());
    const progress = (await durable.resume(pool)) ?? { cursor: 0, pages: 0 };
    return publishChunkPage(producer, outgoing, { ordering: 'per_key', replayId: 'r1' }, progress, ctx, {
      durable: { progress: durable, db: pool },
    }).then(
      () => `attempt ${n}: page sent`,
      (err: Error) => `attempt ${n}: ${err.message}`,
    );
  };

  // Pre-reset attempt 6 sends wave 1 (e1), writes its progress before wave 2, and is failed at wave 2 (Kafka down).
  const failing = producer.sendBatch.bind(producer);
  let kafkaDown = false;
  (producer as { sendBatch: unknown }).sendBatch = async (batch: Parameters<typeof failing>[0]) => {
    if (kafkaDown) throw new Error('Kafka unreachable');
    kafkaDown = true; // wave 1 goes, wave 2 does not
    return failing(batch);
  };
  const before = await attempt(6);
  (producer as { sendBatch: unknown }).sendBatch = failing; // Kafka is back; the operator resets the activity

  // The reset: attempts numbered from 1 again, heartbeat details cleared (the row is all there is).
  const after: string[] = [];
  for (let n = 1; n <= 6 && !after.at(-1)?.endsWith('page sent'); n++) after.push(await attempt(n));

  expect({ before, topic: topic.join(), firstAfterReset: after[0], attemptsAfterReset: after.length }).toEqual({
    before: 'attempt 6: Kafka unreachable',
    topic: 'e1,e2',
    firstAfterReset: 'attempt 1: page sent',
    attemptsAfterReset: 1,
  });
});

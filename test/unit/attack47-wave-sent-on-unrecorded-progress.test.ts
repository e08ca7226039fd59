import type { Context } from '@temporalio/activity';
import { chunkShape, durableProgress } from '../../activities/durable-progress';
import { publishChunkPage } from '../../activities/ordered-publish';
import { withErasuresChecked } from '../../repository/erasure';
import { createProducer } from '../../shared/kafka';
import { pageOptions } from '../../workflows/activity-options';
import { answeringPool } from '../support/answering-pool';
import { fakeActivityServer } from '../support/fake-temporal-attempts';
import { fakeTransactionalKafka } from '../support/fake-transactional-kafka';
import { sendProgressTable } from '../support/send-progress-table';

/**
 * attack47 against 0bf5fe9 ("a page is sent only within its attempt's lease").
 *
 * Invariant: under per_key ordering a key may see its last event twice in a row, never an older event after a newer
 * one (docs/integrity.md section 9): a retry resumes at the wave that failed, from the ids heartbeated after every wave
 * (pageSent); with the lease, a retry resumes from details never older than what its previous attempt sent.
 *
 * Attack: a per_key range page of two events of key k (two waves), Temporal and Kafka healthy, except that the worker
 * of attempt 1 is cut off from the Temporal frontend from 0.9 s on (a partition, as attack46; its heartbeats and its
 * describes fail, Kafka is reachable). Wave 1's hold at 0.8 s got its lease (beat 1, made at 0.8 s, recorded): until
 * 85.8 s. Wave 1 commits at 1.0 s and its pageSent [1] is heartbeated into the void. Wave 2's hold finds 84.8 s of
 * lease left, asks nothing, and wave 2 commits at 1.2 s, inside the lease (invariant 1 holds: nothing after the
 * server's end). The server times attempt 1 out at 90.9 s holding beat 1's details (no pageSent); the retry sends both
 * waves again.
 *
 * Observed: the topic holds e1 (1.0 s), e2 (1.2 s), e1 (92.9 s), e2 (93.1 s): e1 after e2. Expected: no older event
 * after a newer one (e1, e2, or e1, e2, e2). The same on 0bf5fe9^ (no lease at all, checked by making askServerOf
 * answer undefined): the lease bounds when a wave is sent, not whether the previous wave's progress reached the server.
 *
 * Suspected cause: worker/attempt-lease.ts:137-153 (hold) accepts any recorded beat of the attempt, however old, as
 * long as the lease is long enough: it never requires the beat made after the previous wave (its pageSent) to be the
 * one recorded before the next wave is sent (activities/ordered-publish.ts:76-77 heartbeats pageSent and goes on).
 *
 * Fixed: a per_key send writes its progress to Postgres before each wave (activities/durable-progress.ts
 * durableProgress, repository/send-progress.ts, sql/023), and a retry resumes from it when it is further on than the
 * heartbeat: attempt 2 resumes with pageSent [1] written before wave 2, and sends e2 again (e1, e2, e2).
 */

const TOPIC = 't';
/** The worker of attempt 1 is cut off from Temporal from here on (ms), while wave 1's produce is under way. */
const CUT_FROM_MS = 900;

beforeEach(() => jest.useFakeTimers({ doNotFake: ['nextTick', 'queueMicrotask'] }));
afterEach(() => jest.useRealTimers());

it('a per_key page retried after its attempt was cut off from Temporal never sends an older event after a newer one', async () => {
  const started = Date.now();
  const { kafka, transactions } = fakeTransactionalKafka({
    topic: TOPIC,
    now: () => Date.now() - started,
    produceMs: 200,
  });
  const producer = createProducer(kafka);
  await producer.connect();
  // The pool answers the barrier's statements, and send_progress's from a table in memory.
  const table = sendProgressTable();
  const pool = answeringPool(10, table.answer);
  const outgoing = [1, 2].map((id) => ({
    id,
    message: { topic: TOPIC, key: Buffer.from('k'), value: `e${id}`, headers: {} },
  }));
  const page = async (ctx: Context, attempt: number) => {
    await new Promise((resolve) => setTimeout(resolve, 800)); // the page's read
    // As replayRangePage: resumed from the durable progress or the heartbeat, whichever is further on, and sent under
    // the erasures' barrier writing the progress before each wave on the barrier's connection.
    type Progress = { cursor: number; pages: number; pageSent?: number[] };
    const durable = durableProgress<Progress>(ctx, chunkShape());
    const progress = (await durable.resume(pool)) ?? { cursor: 0, pages: 0 };
    await withErasuresChecked(pool, [1, 2], producer, (_erased, keep, db) =>
      publishChunkPage(producer, outgoing, { ordering: 'per_key', replayId: 'r1' }, progress, ctx, {
        keep,
        durable: { progress: durable, db },
      }),
    );
    ctx.heartbeat({ cursor: 2, pages: 1 });
    // Attempt 1 reads its next page for long: its worker is cut off from Temporal, nothing of it reaches the server.
    if (attempt === 1) await new Promise((resolve) => setTimeout(resolve, 200_000));
  };
  const server = fakeActivityServer(pageOptions, page, {
    lostHeartbeat: (attempt, at) => attempt === 1 && at >= CUT_FROM_MS,
  });
  await jest.advanceTimersByTimeAsync(250_000);
  await server.finished;

  const first = server.attempts[0];
  const committed = transactions.filter((t) => t.committed);
  const topic = committed.flatMap((t) => t.values);
  const olderAfterNewer = topic.some((value, i) => topic.slice(0, i).some((before) => before > value));
  expect({
    first: `${first.outcome} at ${first.endedAt! / 1000} s`,
    // The key's events as the topic holds them (committed transactions, in order), when an older one follows a newer.
    keyOrder: olderAfterNewer
      ? `older after newer: ${committed.map((t) => `${t.values.join()} at ${t.at! / 1000} s`).join(', ')}`
      : 'never older after newer',
    topic: topic.join(),
    // What was written: attempt 2 resumed from attempt 1's write before wave 2 (the heartbeat the server holds is older).
    written: table.writes,
  }).toEqual({
    first: expect.stringContaining('timed out (heartbeat)'),
    keyOrder: 'never older after newer',
    topic: 'e1,e2,e2',
    written: [
      'claim', // attempt 1 resumes
      'page 0 {"cursor":0,"pages":0}', // attempt 1, before wave 1
      'ids 1', // attempt 1, before wave 2
      'claim', // attempt 2 resumes with e1 sent (the row holds it)
      'page 0 {"cursor":0,"pages":0}', // its first write, fenced, before wave 2 (no ids new to it)
    ],
  });
});

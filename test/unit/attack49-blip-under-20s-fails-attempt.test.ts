import type { Context } from '@temporalio/activity';
import { publishChunkPage } from '../../activities/ordered-publish';
import { publishMessages } from '../../activities/publish';
import { withErasuresChecked } from '../../repository/erasure';
import { createProducer, REPLAY_PRODUCER_SLOTS } from '../../shared/kafka';
import { pageOptions } from '../../workflows/activity-options';
import { answeringPool } from '../support/answering-pool';
import { attemptLines, fakeActivityServer } from '../support/fake-temporal-attempts';
import { pagesAroundLongRead } from '../support/page-send-setting';
import { fakeTransactionalKafka } from '../support/fake-transactional-kafka';

/**
 * attack49 against 0fc92e6 (AttemptLease.hold's give-up after HOLD_UNANSWERED_MS of unanswered questions).
 *
 * Invariant 2 (liveness): Temporal blips shorter than 20 s never fail an attempt, whenever they happen.
 *
 * Attack: attack48's setting (a range chunk attempt sends P1 at 0.8 s, then reads P2 for 100 s heartbeating every
 * 2 s, every heartbeat recorded; nothing asks the server meanwhile, so the last confirmed heartbeat is 100 s old when
 * P2 is sent at 101 s), on a worker whose shared replay producer is busy: other activities' sends hold all its slots
 * for their 0.2 s produce as P2 begins, so P2's hold starts (101.19 s) 0.19 s after its keepAlive ticker. The worker's
 * link to the Temporal frontend blips for 19.9 s (heartbeats and describes of attempt 1 lost in [101.15 s, 121.05 s));
 * the server recorded a heartbeat (101.0 s) 0.15 s before the blip and never comes near timing attempt 1 out.
 *
 * Observed: attempt 1 fails at 121.32 s with "Attempt 1 has no heartbeat the Temporal server confirmed for its
 * heartbeat timeout (90000 ms: Temporal unreachable); its send gives up", 0.27 s after the blip had ended (its last
 * describes, at 120.82 s by the hold and 121.0 s by the keepAlive, were inside the blip; none was asked after it);
 * attempt 2 (122.32-122.52 s) sends P2. Expected: the hold asks again after the 19.9 s blip, is answered, and attempt 1
 * sends P2 and completes.
 *
 * Suspected cause: worker/attempt-lease.ts:212-216: the give-up is judged at the top of the loop against the clock
 * (`now - max(unansweredSince, startedAt) >= HOLD_UNANSWERED_MS`) after a pause of up to HOLD_PAUSE_MAX_MS (0.5 s) in
 * which nothing was asked: questions went unanswered from 101.19 s to 121.0 s (19.81 s), the pause is counted as
 * unanswered too. Measured to the last failed question (or decided right after a failed question), a blip shorter than
 * 20 s would always pass. (With the hold started in phase with the keepAlive, the keepAlive's describe at exactly 20 s
 * hides it: attack48's blip setting does not show it.)
 *
 * Fixed: the unanswered span runs from the first unanswered question to the last one asked, not to the time of the
 * check (worker/attempt-lease.ts unreachable), and is checked right after a question, not after a pause.
 */

const TOPIC = 't';
const READ_MS = 100_000;
const BEAT_EVERY_MS = 2_000;
/** When attempt 1 begins P2's send (after P1 at 0.8 s and the 100 s read). */
const P2_AT = 101_000;
/** A 19.9 s blip: attempt 1 cut off from the Temporal frontend (heartbeats and describes lost) in [from, until) ms. */
const BLIP = { from: 101_150, until: 121_050 };

beforeEach(() => jest.useFakeTimers({ doNotFake: ['nextTick', 'queueMicrotask'] }));
afterEach(() => jest.useRealTimers());

it('a 19.9 s Temporal blip as a page holds on a busy producer does not fail its attempt', async () => {
  const started = Date.now();
  const now = () => Date.now() - started;
  const { kafka, transactions } = fakeTransactionalKafka({ topic: TOPIC, now, produceMs: 200 });
  const producer = createProducer(kafka);
  await producer.connect();
  const pool = answeringPool();
  // As pageSendSetting's sendPage: a one-event page of a range chunk under the erasures' barrier.
  const progress: { cursor: number; pageSent?: number[] } = { cursor: 0 };
  const sendPage = async (ctx: Context, value: string) => {
    const outgoing = [{ id: 1, message: { topic: TOPIC, key: Buffer.from('k'), value, headers: {} } }];
    await withErasuresChecked(pool, [1], producer, (_erased, keep) =>
      publishChunkPage(producer, outgoing, { replayId: 'r1' }, progress, ctx, { keep }),
    );
    ctx.heartbeat({ cursor: 1 });
  };
  // Other activities of the worker: a send on each slot of the shared producer just before P2 (no attempt of theirs).
  setTimeout(() => {
    for (let i = 0; i < REPLAY_PRODUCER_SLOTS; i += 1) {
      void publishMessages(producer, [{ topic: TOPIC, key: null, value: `other-${i}`, headers: {} }]).catch(
        () => undefined,
      );
    }
  }, P2_AT - 10);

  const lost: number[] = [];
  const server = fakeActivityServer(
    pageOptions,
    pagesAroundLongRead(sendPage, { readMs: READ_MS, beatEveryMs: BEAT_EVERY_MS }),
    {
      lostHeartbeat: (attempt, at) => {
        const cut = attempt === 1 && at >= BLIP.from && at < BLIP.until;
        if (cut) lost.push(at);
        return cut;
      },
    },
  );
  await jest.advanceTimersByTimeAsync(200_000);
  await server.finished;

  const first = server.attempts[0];
  expect({
    blipMs: BLIP.until - BLIP.from,
    attempts: attemptLines(server.attempts),
    lastRecordedBeforeBlip: first.heartbeats.filter((at) => at < BLIP.from).at(-1)! >= BLIP.from - BEAT_EVERY_MS,
    p2Committed: transactions.filter((t) => t.values.includes('P2') && t.committed).length,
  }).toEqual({
    blipMs: 19_900,
    attempts: [expect.stringMatching(/^1 \(0-[\d.]+ s\): completed$/)],
    lastRecordedBeforeBlip: true,
    p2Committed: 1,
  });
  // Its calls into the void, for the record: the last ones just before the blip's end.
  expect(lost.at(-1)).toBeLessThan(BLIP.until);
});

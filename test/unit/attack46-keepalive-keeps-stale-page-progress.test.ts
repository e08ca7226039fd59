import { publishChunkPage } from '../../activities/ordered-publish';
import { createProducer } from '../../shared/kafka';
import { pageOptions } from '../../workflows/activity-options';
import { withErasuresChecked } from '../../repository/erasure';
import { answeringPool } from '../support/answering-pool';
import { fakeActivityServer } from '../support/fake-temporal-attempts';
import { fakeTransactionalKafka, unreachableWhile } from '../support/fake-transactional-kafka';

/**
 * attack46 against f583c4b ("publishMessages's onWait (3d039ea) goes, the interceptor covers every wait").
 *
 * Invariant: under per_key ordering a key may see its last event twice in a row, never an older event after a newer
 * one (activities/ordered-publish.ts publishPage): a retried attempt resumes at the wave that failed, from the ids the
 * previous attempt heartbeated (pageSent).
 *
 * Attack: a cold (archive) per_key range page, replayArchivePage → publishChunkPage, three events of one key: three
 * waves. Waves 1 and 2 are sent and heartbeated ({...before, pageSent: [1, 2]}, onWave). While wave 3 is under way the
 * page's prefetch of the next rows heartbeats too: readArchived's beat is `() => ctx.heartbeat(result)`
 * (activities/archive-range.ts:258-263), and `result` is still the page's `before`, without pageSent (it is assigned
 * after the page). Here that beat is made as wave 3's send starts. Kafka then goes away for 60 s: wave 3's send waits
 * (its fence) and fails; the attempt fails and is retried. Before f583c4b, publishMessages's onWait heartbeated
 * onWave(done) = {...before, pageSent: [1, 2]} every 5 s during that wait, so the page's progress was heartbeated again
 * over the prefetch's beat; the keepalive instead re-heartbeats whatever was heartbeated last: the prefetch's
 * `before`, every 5 s, for the whole wait.
 *
 * Observed: the retry gets no pageSent and sends waves 1, 2 and 3 again: the key's events in the topic are e1, e2, e1,
 * e2, e3 (e1 after e2). Expected: e1, e2, e3 (the retry sends wave 3 only), which is what f583c4b^ (3d039ea, onWait)
 * gives for this same test (checked in a worktree of f583c4b^).
 *
 * Suspected cause: worker/heartbeat-keepalive.ts:23-31 re-heartbeats `last`, the last details of any heartbeat of the
 * attempt, while onWait (removed from activities/ordered-publish.ts and activities/publish.ts) re-heartbeated the page's
 * own progress; together with archive-range.ts:262 (a pre-existing heartbeat of stale progress during a page's waves)
 * the stale details now stick until the attempt ends.
 *
 * Fixed: a wave that fails heartbeats the page's progress (pageSent) again before its attempt fails
 * (activities/ordered-publish.ts publishPage), so the failure carries it whatever was heartbeated meanwhile; and the
 * archive reads' beat repeats the details last heartbeated instead of the chunk's (activities/archive-range.ts). The
 * page is now sent under the erasures' barrier here, as replayArchivePage sends it (written without: since 2f176f1
 * the keepalive runs there only). Fails with the failure-time heartbeat removed.
 */

const TOPIC = 't';
const DOWN_MS = 60_000;

beforeEach(() => jest.useFakeTimers({ doNotFake: ['nextTick', 'queueMicrotask'] }));
afterEach(() => jest.useRealTimers());

it('a per_key page retried after a failed wave never sends an older event of a key after a newer one', async () => {
  const started = Date.now();
  const now = () => Date.now() - started;
  let downFrom = Infinity;
  const { kafka, transactions } = fakeTransactionalKafka({
    topic: TOPIC,
    now,
    produceMs: 200,
    reachable: unreachableWhile(() => now() >= downFrom && now() < downFrom + DOWN_MS),
  });
  const producer = createProducer(kafka);
  await producer.connect();
  const pool = answeringPool();

  // One page, three events of one key: three waves.
  const outgoing = [1, 2, 3].map((id) => ({
    id,
    message: { topic: TOPIC, key: Buffer.from('k'), value: `e${id}`, headers: {} },
  }));
  const server = fakeActivityServer(pageOptions, async (ctx, attempt) => {
    // The chunk's progress before this page (replayArchivePage's `before`), resumed from the last heartbeat.
    const before = (ctx.info.heartbeatDetails as { position: number; pageSent?: number[] } | undefined) ?? {
      position: 0,
    };
    let sends = 0;
    // Sent under the erasures' barrier, as replayArchivePage sends it.
    await withErasuresChecked(pool, [1, 2, 3], producer, (_erased, keep) =>
      publishChunkPage(producer, outgoing, { ordering: 'per_key', replayId: 'r1' }, before, ctx, {
        keep: (sending) => {
          keep(sending);
          if (attempt === 1 && ++sends === 3) {
            // Wave 3 under way: the prefetch's readArchived beat (`() => ctx.heartbeat(result)`, result still `before`).
            ctx.heartbeat(before);
            downFrom = now() + 100; // and Kafka goes away for a minute
          }
        },
      }),
    );
    ctx.heartbeat({ position: 1 });
  });
  await jest.advanceTimersByTimeAsync(DOWN_MS + 5 * 60_000);
  await server.finished;

  const topic = transactions
    .filter((t) => t.committed)
    .sort((a, b) => a.at! - b.at!)
    .flatMap((t) => t.values);
  const olderAfterNewer = topic.flatMap((value, i) =>
    i > 0 && Number(value.slice(1)) < Number(topic[i - 1].slice(1)) ? [`${value} after ${topic[i - 1]}`] : [],
  );
  expect({
    attempts: server.attempts.map((a) => `${a.attempt}: ${a.outcome}`),
    topic,
    olderAfterNewer,
  }).toEqual({
    attempts: [expect.stringMatching(/^1: failed/), '2: completed'],
    topic: ['e1', 'e2', 'e3'],
    olderAfterNewer: [],
  });
});

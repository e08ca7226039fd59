import { ownTopicCheck } from '../../activities/own-topic';
import type { RangeChunkResult } from '../../activities/range';
import { preparePage } from '../../activities/replay-messages';
import { replayTransform } from '../../journal/transform';
import type { ReplayRow } from '../../repository/event-journal';
import { baseConfig } from '../support/env';
import { oneKeyRange, oneKeyRows, redeployedAttempts } from '../support/redeployed-attempts';

/**
 * attack55 against 044e31a ("the three per_key senders resume through one resumeSender").
 *
 * Invariant: under per_key ordering a key's events reach the target in journal order; a retry may send the key's last
 * event twice in a row, never an older event after a newer one (docs/integrity.md section 9, "Progress the server
 * never recorded"): what an attempt sent is durable before its next wave, and its retry skips it.
 *
 * Attack: a per_key range page of three events of key k on topic t: e1 is one replay hop from its original, e2 and e3
 * are originals. Attempt 1 runs on a worker with REPLAY_MAX_HOPS=1: e1 is refused (hop limit), e2 goes out in wave 1,
 * the progress "e2 sent" is written before wave 2, and wave 2 (e3) fails (a broker lost). A rolling deploy raises
 * REPLAY_MAX_HOPS to 3, and the retry runs on a new worker: it resumes from the row (e2 sent, its heartbeat says the
 * same), reads the page again and decides afresh whether each event may be sent: e1 now may, and it is not among the
 * ids sent.
 *
 * Observed: the topic holds e2, e1, e3: e1 after e2. The row and the heartbeat keep only the ids sent; what attempt 1
 * refused is nowhere, so its retry decides again, under another config. A target-topic refusal (REPLAY_TARGET_TOPICS)
 * cannot do this: it refuses by topic, so every event of a key on a topic in one attempt; a transform's refusal depends
 * only on the row's payload text and the patch, both the same for the retry. The hop limit depends on the row and on
 * the worker's config, and so differs between events of one key and between attempts.
 *
 * Suspected cause: activities/durable-progress.ts chunkShape/batchShape and repository/send-progress.ts keep the ids
 * sent of a page, not the ids refused; activities/range.ts replayRangePage (and replayArchivePage, replay.ts
 * replayPage) run preparePage's refusals again on every attempt.
 *
 * Fixed: the ids a page refused are written with its page write, before its first wave (send_progress_sent rows of a
 * refusal kind, sql/024), and heartbeated with its ids sent; a retry counts them as refused by an earlier attempt
 * rather than deciding again.
 */

const TOPIC = 't';

/** Journal rows of key k: e1 one replay hop from its original, e2 and e3 originals. */
const rows = oneKeyRows(TOPIC);

const input = oneKeyRange('attack55');

it('an event one attempt refused is not sent by its retry after a newer event of its key', async () => {
  // Attempt 1 on a worker with REPLAY_MAX_HOPS=1, its retry on a worker of the new deploy with 3.
  const {
    first,
    topic,
    second: result,
    written,
  } = await redeployedAttempts<RangeChunkResult>('attack55', rows, [1, 3], (a) => a.replayRangePage(input));
  expect({
    first,
    topic,
    keyOrder: topic.some((id, i) => topic.slice(0, i).some((before) => before > id))
      ? 'older after newer'
      : 'never older after newer',
    second: { published: result.published, failed: result.failed, done: result.done },
    written,
  }).toEqual({
    first: 'broker lost (simulated)',
    topic: [2, 3],
    keyOrder: 'never older after newer',
    // e1 counted as refused, as attempt 1 decided; e2 and e3 published.
    second: { published: 2, failed: 1, done: true },
    written: [
      'claim', // attempt 1 resumes
      // Before wave 1 (e2), with what the page refused: e1, past the hop limit.
      'page 0 {"cursor":0,"read":0,"published":0,"failed":0,"done":false,"pages":0} hops:1',
      'ids 2', // before wave 2 (e3), which fails
      'claim', // attempt 2 resumes from the row: e2 sent, e1 refused
      'page 0 {"cursor":0,"read":0,"published":0,"failed":0,"done":false,"pages":0}', // before its wave (e3)
    ],
  });
});

it('ids an earlier attempt refused stay refused, whatever their kind, with a reason that quotes no payload', () => {
  const config = baseConfig({ REPLAY_MAX_HOPS: '3', REPLAY_TARGET_TOPICS: TOPIC });
  const row = (id: number, topic = TOPIC): ReplayRow => ({
    ...rows[1],
    id,
    topic,
    payload_text: '{"secret": "s3cr3t", "tenant_id": "acme"}',
  });
  const ownTopic = ownTopicCheck(config, { tenantScoped: false });
  // This attempt would send all four (hop limit 3, topic t allowed, a transform that applies); attempt 1 refused three.
  const page = preparePage(
    [row(1), row(2, 'u'), row(3), row(4)],
    { ...input, transform: replayTransform([{ op: 'add', path: '/replayed', value: true }]) },
    Buffer.from('attack55'),
    config.replay.maxHops,
    { refusal: () => undefined, countEarlier: (r) => ownTopic.countEarlier(r) },
    { refused: { hops: [1], topic: [2], transform: [3] } },
  );
  expect({
    outgoing: page.outgoing.map((o) => o.id),
    refused: page.refused,
    transformFailed: page.transformFailed,
    refusedIds: page.refusedIds,
    refusedTopics: ownTopic.refusedTopics(),
  }).toEqual({
    outgoing: [4],
    refused: [
      { id: 1, reason: 'Event 1: refused by an earlier attempt of this page (past the hop limit, REPLAY_MAX_HOPS)' },
      {
        id: 2,
        reason: 'Event 2: refused by an earlier attempt of this page (its topic "u" not an allowed target then)',
      },
    ],
    transformFailed: [
      { id: 3, reason: 'Event 3: refused by an earlier attempt of this page (the transform did not apply)' },
    ],
    refusedIds: { hops: [1], topic: [2], transform: [3] },
    refusedTopics: { u: 1 },
  });
});

import { MockActivityEnvironment } from '@temporalio/testing';
import type { Producer, ProducerBatch } from 'kafkajs';
import { ownTopicCheck } from '../../activities/own-topic';
import { createRangeActivities, type RangeChunkInput, type RangeChunkResult } from '../../activities/range';
import { preparePage } from '../../activities/replay-messages';
import { replayTransform } from '../../journal/transform';
import type { ReplayRow } from '../../repository/event-journal';
import { createLogger } from '../../shared/logger';
import { createMetrics } from '../../shared/metrics';
import { answeringPool } from '../support/answering-pool';
import { baseConfig } from '../support/env';
import { sendProgressTable } from '../support/send-progress-table';

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
const rows: ReplayRow[] = [1, 2, 3].map((id) => ({
  id,
  tenant_id: 'acme',
  topic: TOPIC,
  replay_count: id === 1 ? 1 : 0,
  payload_text: `{"seq": ${id}, "tenant_id": "acme"}`,
  kafka_key: 'k',
  kafka_key_bytes: Buffer.from('k'),
  kafka_headers: null,
  legacy: false,
}));

const input: RangeChunkInput = {
  filter: { start: '2026-01-01T00:00:00Z', end: '2026-02-01T00:00:00Z', maxId: 3, includeReplays: true },
  cursor: 0,
  limit: 10,
  source: 'range',
  replayId: 'attack55',
  ordering: 'per_key',
};

it('an event one attempt refused is not sent by its retry after a newer event of its key', async () => {
  const table = sendProgressTable();
  // The journal's range page, and send_progress in memory; the barrier's statements get the default answer.
  const pool = answeringPool(10, (text, values) => {
    if (!text.includes('FROM event_journal WHERE')) return table.answer(text, values);
    const [cursor, limit] = values.slice(-2) as [number, number];
    const page = rows.filter((row) => row.id > cursor).slice(0, limit);
    return { rows: page, rowCount: page.length } as never;
  });
  /** The ids the topic holds, in order; a send holding e3 fails in attempt 1 (its broker lost, nothing written). */
  const topic: number[] = [];
  let attempt = 0;
  const producer = {
    sendBatch: async ({ topicMessages }: ProducerBatch) => {
      const ids = topicMessages!.flatMap((t) =>
        t.messages.map(
          (m) => (JSON.parse(String(m.value)) as { _replayed_from_event_id: number })._replayed_from_event_id,
        ),
      );
      if (attempt === 1 && ids.includes(3)) throw new Error('broker lost (simulated)');
      topic.push(...ids);
      return [];
    },
  } as unknown as Producer;

  /** Attempt `n` of the chunk on a worker whose REPLAY_MAX_HOPS is `maxHops`, resumed from `heartbeatDetails`. */
  const run = async (n: number, maxHops: number, heartbeatDetails: unknown) => {
    attempt = n;
    const activities = createRangeActivities({
      pool,
      producer,
      metrics: createMetrics(),
      log: createLogger('silent'),
      config: baseConfig({ REPLAY_MAX_HOPS: String(maxHops), REPLAY_TARGET_TOPICS: TOPIC }),
      lineageKey: Buffer.from('attack55'),
      archive: undefined as never,
    });
    const env = new MockActivityEnvironment({
      workflowExecution: { workflowId: 'attack55', runId: 'attack55-run' },
      activityId: '1',
      attempt: n,
      currentAttemptScheduledTimestampMs: n * 1000,
      heartbeatDetails,
    });
    const beats: unknown[] = [];
    env.on('heartbeat', (details: unknown) => beats.push(details));
    const outcome = await env.run(activities.replayRangePage, input).then(
      (result) => result,
      (err: Error) => err.message,
    );
    return { outcome, lastBeat: beats.at(-1) };
  };

  const first = await run(1, 1, undefined);
  // The retry, on a worker of the new deploy, with the details attempt 1's failure carried.
  const second = await run(2, 3, first.lastBeat);
  const result = second.outcome as RangeChunkResult;
  expect({
    first: first.outcome,
    topic,
    keyOrder: topic.some((id, i) => topic.slice(0, i).some((before) => before > id))
      ? 'older after newer'
      : 'never older after newer',
    second: { published: result.published, failed: result.failed, done: result.done },
    written: table.writes,
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
    { hops: [1], topic: [2], transform: [3] },
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

import type { RangeChunkResult } from '../../activities/range';
import type { ReplayPageResult } from '../../activities/replay';
import type { ReplayRow } from '../../repository/event-journal';
import {
  journalPool,
  replayAttempt,
  sendingProducer,
  type ReplayActivities,
  type SentMessage,
} from '../support/redeployed-attempts';
import { sendProgressTable } from '../support/send-progress-table';

/**
 * Generated per_key replays retried across workers of different configs (docs/integrity.md section 9, "A refusal
 * decided again by a retry"): a journal of a few events on two topics and two keys, some one or two replay hops from
 * their originals; a range chunk of several pages, or one batch page; up to eight attempts, each on a worker of its own
 * REPLAY_MAX_HOPS (1-3) and REPLAY_TARGET_TOPICS (t, u, or both), most of them failing at a send, each heartbeat
 * recorded by the server or lost (the retry resumes from the last one recorded, and from send_progress, in memory).
 *
 * Checked, with sends that fail before writing anything (a broker lost): each key's events reach the topic in journal
 * order (a repeat of its last event allowed); no event kept refused in send_progress is published; the replay's result
 * counts each event once, published or failed, and published counts the events the topic holds. On 1d0e6d4 the counts
 * fail (an event published by one attempt counted failed by a retry that would refuse it:
 * test/unit/attack56-sent-then-refused-on-retry.test.ts).
 *
 * With sends that write their messages and then fail (the acknowledgement lost), only the order is checked: the retry
 * cannot know that the wave went out, decides its events again and may refuse one the topic holds (the wave a retry may
 * send again, "Progress the server never recorded").
 */

/** A deterministic generator of numbers in [0, 1) (a linear congruential one): a failing seed replays the same. */
function generator(seed: number) {
  return () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x7fffffff;
  };
}

type Kind = 'range' | 'batch';

async function replayed(seed: number, kind: Kind, ackLost: boolean) {
  const random = generator(seed);
  const pick = <T>(xs: T[]) => xs[Math.floor(random() * xs.length)];
  const count = 3 + Math.floor(random() * 8);
  const rows: ReplayRow[] = Array.from({ length: count }, (_, i) => ({
    id: i + 1,
    tenant_id: 'acme',
    topic: pick(['t', 'u']),
    replay_count: pick([0, 0, 1, 2]),
    payload_text: `{"seq": ${i + 1}, "tenant_id": "acme"}`,
    kafka_key: null,
    kafka_key_bytes: Buffer.from(pick(['a', 'b'])),
    kafka_headers: null,
    legacy: false,
  }));
  const limit = 2 + Math.floor(random() * 3);
  const table = sendProgressTable();
  const pool = journalPool(rows, table);
  const topic: SentMessage[] = [];
  let sends = 0;
  let failAt = -1;
  const producer = sendingProducer((messages) => {
    if (++sends !== failAt) topic.push(...messages);
    else {
      if (ackLost) topic.push(...messages);
      throw new Error('broker lost (simulated)');
    }
  });
  const run = (activities: ReplayActivities): Promise<RangeChunkResult | ReplayPageResult> =>
    kind === 'range'
      ? activities.replayRangePage({
          filter: { start: '2026-01-01T00:00:00Z', end: '2026-02-01T00:00:00Z', maxId: count, includeReplays: true },
          cursor: 0,
          limit,
          maxPages: 100,
          source: 'range',
          replayId: 'generated',
          ordering: 'per_key',
        })
      : activities.replayBatchPage({
          ids: rows.map((row) => row.id),
          source: 'batch',
          replayId: 'generated',
          ordering: 'per_key',
        });
  let recorded: unknown;
  let result: RangeChunkResult | ReplayPageResult | undefined;
  for (let attempt = 1; attempt <= 8 && !result; attempt++) {
    const config = { REPLAY_MAX_HOPS: String(pick([1, 2, 3])), REPLAY_TARGET_TOPICS: pick(['t', 'u', 't,u']) };
    sends = 0;
    failAt = attempt < 8 && random() < 0.7 ? 1 + Math.floor(random() * 4) : -1;
    const onBeat = (details: unknown) => {
      if (random() < 0.6) recorded = structuredClone(details);
    };
    const { outcome } = await replayAttempt(
      { name: 'generated', attempt, heartbeatDetails: recorded, pool, producer, config, onBeat },
      run,
    );
    if (typeof outcome !== 'string') result = outcome;
  }

  const problems: string[] = [];
  const byKey = new Map<string, number[]>();
  for (const { id, key } of topic) byKey.set(key, [...(byKey.get(key) ?? []), id]);
  for (const [key, ids] of byKey) {
    if (ids.some((id, i) => i > 0 && id < ids[i - 1])) problems.push(`key ${key} got ${ids.join(', ')}`);
  }
  if (!ackLost) {
    const published = new Set(topic.map((m) => m.id));
    for (const write of table.writes) {
      for (const [, refusal, ids] of write.matchAll(/ (hops|topic|transform):([\d,]+)/g)) {
        for (const id of ids.split(',').map(Number)) {
          if (published.has(id)) problems.push(`event ${id} kept refused (${refusal}) and published`);
        }
      }
    }
    if (result) {
      const failed = 'failed' in result ? result.failed : result.refused.length;
      if (result.published + failed !== count) problems.push(`published ${result.published} + failed ${failed}`);
      if (result.published !== published.size) problems.push(`published ${result.published} of ${published.size}`);
    }
  }
  return problems;
}

describe.each<Kind>(['range', 'batch'])('a per_key %s replay retried on workers of other configs', (kind) => {
  it.each([
    ['a send that fails before writing: keys in journal order, each event once in the counts', false],
    ['a send whose acknowledgement is lost: keys in journal order', true],
  ])('%s', async (_name, ackLost) => {
    const failures: { seed: number; problems: string[] }[] = [];
    for (let seed = 1; seed <= 300 && failures.length < 3; seed++) {
      const problems = await replayed(seed * 7919, kind, ackLost);
      if (problems.length) failures.push({ seed: seed * 7919, problems });
    }
    expect(failures).toEqual([]);
  });
});

import type { RangeChunkResult } from '../../activities/range';
import type { ReplayPageResult } from '../../activities/replay';
import { oneKeyRange, oneKeyRows, redeployedAttempts } from '../support/redeployed-attempts';

/**
 * attack56 against 1d0e6d4 ("Attack55: a per_key retry decided its page's refusals again").
 *
 * Invariant: what a per_key page decided about an event, sent or refused, is kept with its progress and never decided
 * again (docs/integrity.md section 9, "A refusal decided again by a retry"); an event published is never later
 * reported refused, and a replay's counts (published + failed) say what happened to each event once.
 *
 * Attack: a per_key page of three events of key k on topic t, e1 one replay hop from its original. Attempt 1 runs on a
 * worker with REPLAY_MAX_HOPS=2: e1 goes out in wave 1, e2 in wave 2, and wave 3 (e3) fails (a broker lost). A rolling
 * deploy lowers REPLAY_MAX_HOPS to 1, and the retry runs on a new worker: it resumes from the row (e1, e2 sent). Both
 * a range chunk (replayRangePage) and a batch page (replayBatchPage).
 *
 * Observed: the retry decides e1 again, under its own config: e1 is reported refused ("already 1 replay hop(s) from
 * its original; REPLAY_MAX_HOPS is 1") and counted in `failed`, though attempt 1 published it (the topic holds it),
 * and it is written to send_progress as refused ('hops:1') next to its row as sent. The range chunk ends with
 * published 2, failed 1 for three events published; the batch page with published 2 and e1 in `refused`.
 *
 * Suspected cause: activities/replay-messages.ts preparePage is given the ids an earlier attempt refused, not those it
 * sent: the ids sent are only skipped by publishPage, after preparePage has decided them again.
 *
 * Fixed: preparePage takes the ids an earlier attempt sent with those it refused (EarlierDecisions): an id sent is
 * not asked about the hop limit or the topic again, and is counted published, as attempt 1 decided.
 */

/** Key k's events on topic t: e1 one replay hop from its original, e2 and e3 originals. */
const rows = oneKeyRows('t');

it('a range chunk: an event its attempt 1 sent is not reported refused by its retry', async () => {
  const input = oneKeyRange('attack56-range');
  const { first, topic, second, written } = await redeployedAttempts<RangeChunkResult>(
    'attack56-range',
    rows,
    [2, 1],
    (a) => a.replayRangePage(input),
  );
  expect({
    first,
    topic,
    second: { published: second.published, failed: second.failed, done: second.done },
    refusedWritten: written.filter((w) => w.includes('hops:')),
  }).toEqual({
    first: 'broker lost (simulated)',
    topic: [1, 2, 3],
    // All three published, e1 and e2 by attempt 1: nothing refused.
    second: { published: 3, failed: 0, done: true },
    refusedWritten: [],
  });
});

it('a batch page: an event its attempt 1 sent is not reported refused by its retry', async () => {
  const { first, topic, second, written } = await redeployedAttempts<ReplayPageResult>(
    'attack56-batch',
    rows,
    [2, 1],
    (a) => a.replayBatchPage({ ids: [1, 2, 3], source: 'batch', replayId: 'attack56-batch', ordering: 'per_key' }),
  );
  expect({
    first,
    topic,
    second: { published: second.published, refused: second.refused },
    refusedWritten: written.filter((w) => w.includes('hops:')),
  }).toEqual({
    first: 'broker lost (simulated)',
    topic: [1, 2, 3],
    second: { published: 3, refused: [] },
    refusedWritten: [],
  });
});

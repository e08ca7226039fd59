import type { Producer, ProducerBatch, RecordMetadata } from 'kafkajs';
import { publishPage } from '../../activities/ordered-publish';
import type { OutgoingEvent } from '../../activities/replay-messages';

/**
 * Attack on issue 14 (sharded range replay) x docs/integrity.md §9 "A send outliving its attempt": a per-key wave's
 * send may outlive its cancelled attempt, and the next attempt of the same sender in the same worker waits for it
 * (activities/ordered-publish.ts, `running`). The children of a sharded per_key replay all replay under the parent's
 * id and run at the same time in one worker: keyed by replay id (as it was), one child's send replaced the other's in
 * that map, and a child's retry no longer waited for its own send still in flight. The sender is now the sending
 * workflow (each child's own id; publishChunkPage passes the activity's workflow id).
 */

interface Call {
  ids: number[];
  settle: (value: RecordMetadata[]) => void;
  settled: boolean;
}

function fakeProducer(calls: Call[]): Producer {
  return {
    sendBatch: (batch: ProducerBatch) =>
      new Promise<RecordMetadata[]>((resolve) => {
        const call: Call = {
          ids: batch.topicMessages!.flatMap((t) => t.messages.map((m) => Number(m.value))),
          settled: false,
          settle: (value) => {
            call.settled = true;
            resolve(value);
          },
        };
        calls.push(call);
      }),
  } as unknown as Producer;
}

const event = (id: number, key: string): OutgoingEvent => ({
  id,
  message: { topic: 'apexflow.leads.created.replayed', key: Buffer.from(key), value: String(id), headers: {} },
});

/** Lets every pending promise callback run (the fake producer never does I/O). */
const flush = async () => {
  for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
};

/**
 * One child (shard 0, key lead-a) sends its first wave; its attempt is cancelled while the send is still in flight
 * (kafkajs retrying); its retry replays the same page: event 1 again, then event 3 of the same key. Returns the ids
 * the producer was asked to send before shard 0's first send settled.
 */
async function scenario(senders: { shard0: string; shard1?: string }, replayId?: string): Promise<number[][]> {
  const of = (sender: string) => ({ replayId: replayId ?? sender, sender });
  const calls: Call[] = [];
  const producer = fakeProducer(calls);
  const attempt = new AbortController();
  const first = publishPage(producer, [event(1, 'lead-a')], {
    ordering: 'per_key',
    ...of(senders.shard0),
    signal: attempt.signal,
  });
  // Shard 1 of the same replay (another key) sends its wave at the same moment in the same worker.
  const sibling = senders.shard1
    ? publishPage(producer, [event(2, 'lead-b')], { ordering: 'per_key', ...of(senders.shard1) })
    : undefined;
  await flush();
  attempt.abort(new Error('attempt cancelled (heartbeat timeout)'));
  await expect(first).rejects.toThrow('attempt cancelled');
  // Shard 1's send is acknowledged; shard 0's first send (event 1) is still in flight.
  for (const call of calls.slice(1)) call.settle([]);
  await sibling;
  const retry = publishPage(producer, [event(1, 'lead-a'), event(3, 'lead-a')], {
    ordering: 'per_key',
    ...of(senders.shard0),
  });
  // Whatever the retry sends now is acknowledged at once.
  for (let i = 0; i < 5; i++) {
    await flush();
    for (const call of calls.slice(1)) if (!call.settled) call.settle([]);
  }
  const beforeFirstSettled = calls.map((c) => c.ids);
  calls[0].settle([]);
  let done = false;
  void retry.finally(() => (done = true));
  while (!done) {
    await flush();
    for (const call of calls) if (!call.settled) call.settle([]);
  }
  await retry;
  return beforeFirstSettled;
}

it('an unsharded per_key retry waits for its own send still in flight', async () => {
  expect(await scenario({ shard0: 'replay-range-a' })).toEqual([[1]]);
});

it('two different replays in one worker do not affect each other', async () => {
  expect(await scenario({ shard0: 'replay-range-a', shard1: 'replay-range-b' })).toEqual([[1], [2]]);
});

it('a shard child retry waits for its own send still in flight, though a sibling shard (same replay id) sent meanwhile', async () => {
  // Children of a sharded replay publish under the parent's id (workflows/range-replay.ts, replayId), each its own sender.
  const sent = await scenario(
    { shard0: 'replay-range-sharded-shard-0', shard1: 'replay-range-sharded-shard-1' },
    'replay-range-sharded',
  );
  // Expected: nothing more of shard 0 goes out while event 1's first send is in flight; else event 3 (newer) can be
  // written before that first send of event 1 (older) lands, and lead-a sees 1, 3, 1.
  expect(sent).toEqual([[1], [2]]);
});

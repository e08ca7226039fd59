import { makeEvent } from '../../cli/traffic';
import type { SinkHarness } from './sink';

/**
 * Produces realistic events with payload.seq in [from, from+count), acked by all replicas, spread over `tenants`
 * tenants and the harness's two private topics (by kind) and their partitions.
 */
export async function produceSeq(
  h: SinkHarness,
  from: number,
  count: number,
  tenants = 50,
  batch = 500,
): Promise<void> {
  for (let i = 0; i < count; i += batch) {
    const events = Array.from({ length: Math.min(batch, count - i) }, (_, j) => makeEvent(from + i + j, tenants));
    const of = (kind: string) => events.filter((e) => e.topic.includes(kind)).map(({ key, value }) => ({ key, value }));
    await h.upstream.sendBatch({
      acks: -1,
      topicMessages: [
        { topic: h.topics.leads, messages: of('leads') },
        { topic: h.topics.jobs, messages: of('jobs') },
      ],
    });
  }
}

/** Journal rows for seq in [from, from+count): total, distinct seqs, distinct Kafka coordinates. */
export async function tallySeq(h: SinkHarness, from: number, count: number) {
  const { rows } = await h.pool.query<{ total: number; seqs: number; coords: number }>(
    `SELECT count(*)::int AS total, count(DISTINCT payload->>'seq')::int AS seqs,
            count(DISTINCT (topic, kafka_partition, kafka_offset))::int AS coords
       FROM event_journal WHERE (payload->>'seq')::int >= $1 AND (payload->>'seq')::int < $2`,
    [from, from + count],
  );
  return rows[0];
}

/** What exactly-once looks like for `count` events. */
export const exactlyOnce = (count: number) => ({ total: count, seqs: count, coords: count });

/**
 * Steady traffic until stop(): `perSend` JSON events (`event(send, index)`) at a time, every `everyMs` ms, to the
 * harness's two topics in turn. stop() waits for the send in flight and returns how many events were produced.
 */
export function steadyTraffic(
  h: SinkHarness,
  perSend: number,
  everyMs: number,
  event: (send: number, index: number) => unknown,
): { stop(): Promise<number> } {
  let produced = 0;
  let sending = true;
  const traffic = (async () => {
    for (let i = 0; sending; i++) {
      await h.send(
        i % 2 ? h.topics.leads : h.topics.jobs,
        Array.from({ length: perSend }, (_, j) => event(i, j)),
      );
      produced += perSend;
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  return {
    async stop() {
      sending = false;
      await traffic;
      return produced;
    },
  };
}

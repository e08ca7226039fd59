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
    await h.producer.sendBatch({
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

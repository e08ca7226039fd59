import type { Kafka, Producer, ProducerBatch } from 'kafkajs';
import type { Pool } from '../../shared/db';
import { readTopic } from './journal';
import type { SinkHarness } from './sink';

/** The failure a partly failing producer injects: armed at an event id, counting the sends it broke. */
export interface PartialSendFailure {
  at: number | undefined;
  failed: number;
}

/**
 * The harness's producer, except that once `failure.at` is armed, the first send holding that event writes only the
 * messages of keys lead-a and lead-b (as when a partition leader goes away mid-send), then fails.
 */
export function partlyFailingProducer(h: SinkHarness, failure: PartialSendFailure): Producer {
  return {
    ...h.producer,
    sendBatch: async (batch: ProducerBatch) => {
      const holds = (m: { value: unknown }) =>
        (JSON.parse(String(m.value)) as { _replayed_from_event_id: number })._replayed_from_event_id === failure.at;
      if (failure.at !== undefined && batch.topicMessages!.some((t) => t.messages.some(holds))) {
        failure.at = undefined;
        failure.failed++;
        const written = batch.topicMessages!.map((t) => ({
          ...t,
          messages: t.messages.filter((m) => ['lead-a', 'lead-b'].includes(String(m.key))),
        }));
        await h.producer.sendBatch({ ...batch, topicMessages: written });
        throw new Error('partition leader gone after a partial write (simulated)');
      }
      return h.producer.sendBatch(batch);
    },
  };
}

/**
 * Seeds `count` events of tenant acme on `topic`, one second apart within the last hour, their keys interleaved
 * (keys[0], keys[1]…) with runs of one key (every `repeatEvery`-th event is lead-a again). Returns their ids in order.
 */
export async function seedInterleavedKeys(
  pool: Pool,
  topic: string,
  count: number,
  keys: string[],
  repeatEvery: number,
): Promise<number[]> {
  const { rows } = await pool.query<{ id: string }>(
    `INSERT INTO event_journal (tenant_id, topic, payload, received_at, kafka_key, kafka_key_bytes)
     SELECT 'acme', $1, jsonb_build_object('tenant_id', 'acme', 'seq', g, 'key', k.key), now() - interval '1 hour' + make_interval(secs => g), k.key, convert_to(k.key, 'UTF8')
       FROM generate_series(0, $2 - 1) AS g,
            LATERAL (SELECT CASE WHEN g % $4 = $4 - 1 THEN 'lead-a' ELSE ($3::text[])[1 + g % array_length($3::text[], 1)] END AS key) AS k
     ORDER BY g
     RETURNING id`,
    [topic, count, keys, repeatEvery],
  );
  return rows.map((r) => Number(r.id)).sort((a, b) => a - b);
}

/**
 * Each key's event ids as the journal holds them (`ids`, in id order) and as `topic` holds their replays (at least
 * `expected` messages, read from the start; a key stays on one partition): what per-key order is checked against.
 */
export async function keyOrders(pool: Pool, kafka: Kafka, topic: string, ids: number[], expected = ids.length) {
  const seen = new Map<string, number[]>();
  for (const m of await readTopic(kafka, topic, expected)) {
    seen.set(m.key as string, [...(seen.get(m.key as string) ?? []), m._replayed_from_event_id as number]);
  }
  const { rows } = await pool.query<{ id: string; key: string }>(
    'SELECT id, kafka_key AS key FROM event_journal WHERE id = ANY($1::bigint[]) ORDER BY id',
    [ids],
  );
  const journal = new Map<string, number[]>();
  for (const row of rows) journal.set(row.key, [...(journal.get(row.key) ?? []), Number(row.id)]);
  return { journal, seen };
}

/** Adjacent repeats dropped: what a consumer sees once it ignores a message equal to the one before it. */
export const collapseRepeats = (list: number[]) => list.filter((id, i) => i === 0 || id !== list[i - 1]);

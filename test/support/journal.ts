import type { Kafka } from 'kafkajs';
import type { Pool } from '../../shared/db';
import { readToEnd } from '../../bench/support/topic-end';

/**
 * Seeds `count` original events directly into event_journal, one second apart from `from`, spread over tenants and
 * the given topics. Returns their ids in order.
 */
export async function seedJournal(
  pool: Pool,
  count: number,
  opts: { topics: string[]; tenants?: string[]; from?: Date; label?: string },
): Promise<number[]> {
  const tenants = opts.tenants ?? ['acme', 'globex', 'initech'];
  const from = opts.from ?? new Date(Date.now() - count * 1000 - 60_000);
  const { rows } = await pool.query<{ id: number }>(
    `INSERT INTO event_journal (tenant_id, topic, payload, received_at, kafka_key)
     SELECT ($2::text[])[1 + (g % array_length($2::text[], 1))],
            ($3::text[])[1 + (g % array_length($3::text[], 1))],
            jsonb_build_object('seq', g, 'label', $5::text, 'name', 'Seeded ' || g,
                               'tenant_id', ($2::text[])[1 + (g % array_length($2::text[], 1))]),
            $4::timestamptz + make_interval(secs => g),
            'seed-' || g
       FROM generate_series(0, $1 - 1) AS g
     RETURNING id`,
    [count, tenants, opts.topics, from, opts.label ?? 'seed'],
  );
  return rows.map((r) => r.id).sort((a, b) => a - b);
}

/**
 * Seeds `count` dead letters of unparsable values into event_dlq at offsets 1..count of partition 0, received `daysAgo`
 * days ago (no content hash, as the tests of DLQ retention need only their number).
 */
export async function seedOldDeadLetters(pool: Pool, topic: string, count: number, daysAgo: number): Promise<void> {
  await pool.query(
    `INSERT INTO event_dlq (topic, raw_value, error, reason, kafka_partition, kafka_offset, received_at)
     SELECT $1, 'not json ' || n, 'Record value is not valid JSON', 'invalid_json', 0, n, now() - make_interval(days => $3)
       FROM generate_series(1, $2) AS n`,
    [topic, count, daysAgo],
  );
}

/** Every message currently on a topic (all partitions, from the beginning), parsed as JSON. */
export async function readTopic(
  kafka: Kafka,
  topic: string,
  expected: number,
  timeoutMs = 30_000,
): Promise<Record<string, unknown>[]> {
  const consumer = kafka.consumer({ groupId: `reader-${topic}-${Date.now()}-${Math.random()}` });
  const seen: Record<string, unknown>[] = [];
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const done = new Promise<void>((resolve) => {
    void consumer.run({
      eachMessage: async ({ message }) => {
        seen.push({ ...JSON.parse(message.value!.toString()), _headers: message.headers });
        if (seen.length >= expected) resolve();
      },
    });
  });
  await Promise.race([done, new Promise((r) => setTimeout(r, timeoutMs))]);
  // Linger briefly so that anything beyond `expected` (a duplicate) would be seen too.
  await new Promise((r) => setTimeout(r, 1500));
  await consumer.disconnect();
  return seen;
}

/** How many messages a topic holds (read to its end: transaction markers and aborted records are not messages). */
export async function topicSize(kafka: Kafka, topic: string): Promise<number> {
  let count = 0;
  await readToEnd(kafka, topic, () => count++);
  return count;
}

/** The replays a replay workflow journaled: rows, and distinct source events among them. */
export async function journaledReplays(pool: Pool, workflowId: string): Promise<{ total: number; sources: number }> {
  const { rows } = await pool.query<{ total: number; sources: number }>(
    `SELECT count(*)::int AS total, count(DISTINCT payload->>'_replayed_from_event_id')::int AS sources
       FROM event_journal WHERE replay_count > 0 AND payload->>'_replay_id' = $1`,
    [workflowId],
  );
  return rows[0];
}

import type { IHeaders, Kafka } from 'kafkajs';
import { LINEAGE_HEADERS } from '../../journal/lineage';

/** A message of a replay's target topic as bytes: the journal row it came from, key and headers base64. */
export interface RawMessage {
  from: number;
  key: string | null;
  value: string;
  headers: Array<[string, string | null]>;
  /** The message's Kafka timestamp (ms): when the replay sent it. */
  timestamp: number;
}

function headerPairs(headers: IHeaders): Array<[string, string | null]> {
  return Object.entries(headers).flatMap(([name, value]) =>
    (Array.isArray(value) ? value : [value]).map((v): [string, string | null] => [
      name,
      v === undefined || v === null ? null : Buffer.from(v).toString('base64'),
    ]),
  );
}

/**
 * Every message of `topic` from its beginning, by a new consumer group: until `expected` came (or 20 s), then 1.5 s
 * more, so that messages beyond the expected (sent twice) are seen too.
 */
export async function readRaw(kafka: Kafka, topic: string, expected: number): Promise<RawMessage[]> {
  const consumer = kafka.consumer({ groupId: `raw-${topic}-${Date.now()}` });
  const seen: RawMessage[] = [];
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const done = new Promise<void>((resolve) => {
    if (expected === 0) resolve();
    void consumer.run({
      eachMessage: async ({ message }) => {
        const from = Number(String(message.headers![LINEAGE_HEADERS.from]));
        seen.push({
          from,
          key: message.key?.toString('base64') ?? null,
          value: message.value!.toString('utf8'),
          headers: headerPairs(message.headers!),
          timestamp: Number(message.timestamp),
        });
        if (seen.length >= expected) resolve();
      },
    });
  });
  await Promise.race([done, new Promise((r) => setTimeout(r, 20_000))]);
  await new Promise((r) => setTimeout(r, 1500));
  await consumer.disconnect();
  return seen;
}

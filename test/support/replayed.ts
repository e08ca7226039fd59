import type { IHeaders, Kafka } from 'kafkajs';
import { LINEAGE_HEADERS } from '../../journal/lineage';

/** A replayed message as Kafka holds it: the journal id it came from, bytes in base64, Kafka's timestamp. */
export interface RawMessage {
  from: number;
  key: string | null;
  value: string;
  headers: Array<[string, string | null]>;
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
 * Reads a topic from its beginning with a fresh group until `expected` messages came (or 20 s), then 1.5 s more for
 * any beyond them.
 */
export async function readReplayed(kafka: Kafka, topic: string, expected: number): Promise<RawMessage[]> {
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

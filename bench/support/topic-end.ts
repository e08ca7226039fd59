import type { Kafka, KafkaMessage } from 'kafkajs';
import { uniqueSuffix } from './env';

/**
 * Reads `topic` from its beginning up to the high watermarks of the call (a new group, read committed), giving each
 * message to onMessage. The end is where each partition's batches end, not its last message: replays publish in
 * transactions, whose commit markers (and aborted records) take offsets no message is delivered at.
 */
export async function readToEnd(
  kafka: Kafka,
  topic: string,
  onMessage: (partition: number, message: KafkaMessage) => void,
  timeoutMs = 30_000,
): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  const offsets = await admin.fetchTopicOffsets(topic).finally(() => admin.disconnect());
  const pending = new Map(
    offsets.filter((p) => Number(p.high) > Number(p.low)).map((p) => [p.partition, BigInt(p.high)]),
  );
  if (pending.size === 0) return;
  const consumer = kafka.consumer({ groupId: `read-to-end-${uniqueSuffix()}` });
  await consumer.connect();
  let timer: NodeJS.Timeout | undefined;
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      timer = setTimeout(
        () => reject(new Error(`Reading ${topic} did not reach its end within ${timeoutMs} ms`)),
        timeoutMs,
      );
      // Every batch, also one of markers only (never given to eachMessage), reports the last offset it covered.
      consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
        if (BigInt(payload.lastOffset) + 1n >= (pending.get(payload.partition) ?? 0n))
          pending.delete(payload.partition);
        if (pending.size === 0) resolve();
      });
      void consumer.run({ eachMessage: async ({ partition, message }) => onMessage(partition, message) }).catch(reject);
    });
  } finally {
    clearTimeout(timer);
    await consumer.disconnect();
  }
}

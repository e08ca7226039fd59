import type { Admin, Kafka, KafkaMessage } from 'kafkajs';
import { uniqueSuffix } from './env';

type PartitionOffset = Awaited<ReturnType<Admin['fetchTopicOffsets']>>[number];

/** How long the committed ends of a topic must stay put before readToEnd reads up to them. */
const SETTLE_MS = 500;
const SETTLE_POLL_MS = 50;
/** A topic still being written to never settles: its ends after this long are taken. */
const SETTLE_MAX_MS = 5_000;

/**
 * The topic's committed ends (ListOffsets, read committed: kafkajs's admin asks so), once they stayed put for
 * SETTLE_MS. A transaction's commit is answered once the coordinator has logged it; its markers are written to the
 * partitions after that, and the committed end moves only then (checked against the broker: a few to a hundred
 * milliseconds after the answer). So the ends of a call made right after a commit could still leave it out.
 */
async function settledEnds(admin: Admin, topic: string): Promise<PartitionOffset[]> {
  let ends = await admin.fetchTopicOffsets(topic);
  const giveUp = Date.now() + SETTLE_MAX_MS;
  for (let stable = Date.now(); Date.now() - stable < SETTLE_MS && Date.now() < giveUp;) {
    await new Promise((resolve) => setTimeout(resolve, SETTLE_POLL_MS));
    const next = await admin.fetchTopicOffsets(topic);
    if (next.some((p) => ends.find((q) => q.partition === p.partition)?.high !== p.high)) stable = Date.now();
    ends = next;
  }
  return ends;
}

/**
 * Reads `topic` from its beginning up to its committed ends once they settled (settledEnds; a new group, read
 * committed), giving each message to onMessage. The end is where each partition's batches end, not its last message:
 * replays publish in transactions, whose commit markers (and aborted records) take offsets no message is delivered at.
 */
export async function readToEnd(
  kafka: Kafka,
  topic: string,
  onMessage: (partition: number, message: KafkaMessage) => void,
  timeoutMs = 30_000,
): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  const offsets = await settledEnds(admin, topic).finally(() => admin.disconnect());
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

import type { Producer } from 'kafkajs';
import type { ReplayMessage } from './lineage';

/** Sends messages in a single producer call (one request per broker), acks from all in-sync replicas. */
export async function publishMessages(producer: Producer, messages: ReplayMessage[]): Promise<void> {
  if (messages.length === 0) return;
  const byTopic = new Map<string, ReplayMessage[]>();
  for (const m of messages) {
    const list = byTopic.get(m.topic);
    if (list) list.push(m);
    else byTopic.set(m.topic, [m]);
  }
  await producer.sendBatch({
    acks: -1,
    topicMessages: [...byTopic].map(([topic, list]) => ({
      topic,
      messages: list.map(({ key, value, headers }) => ({ key, value, headers })),
    })),
  });
}

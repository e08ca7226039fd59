import type { Kafka, Producer } from 'kafkajs';
import { makeEvent, type TrafficEvent } from '../../cli/traffic';
import { readToEnd } from './topic-end';

export interface BenchTopics {
  leads: string;
  jobs: string;
}

/** Two fresh topics named like the real ones (makeEvent shapes a job when the topic name says "jobs"). */
export function benchTopics(suffix: string): BenchTopics {
  return { leads: `bench.${suffix}.leads.created`, jobs: `bench.${suffix}.jobs.created` };
}

export async function createTopics(kafka: Kafka, topics: string[], numPartitions = 3): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    await admin.createTopics({
      waitForLeaders: true,
      topics: topics.map((topic) => ({ topic, numPartitions, replicationFactor: 1 })),
    });
  } finally {
    await admin.disconnect();
  }
}

export async function deleteTopics(kafka: Kafka, topics: string[]): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    await admin.deleteTopics({ topics }).catch(() => undefined);
  } finally {
    await admin.disconnect();
  }
}

/** The same N realistic events every time for a given N: two topics (1 job in 3), `tenants` tenants. */
export function makeEvents(count: number, topics: BenchTopics, tenants = 50): TrafficEvent[] {
  const events: TrafficEvent[] = [];
  for (let seq = 0; seq < count; seq++)
    events.push(makeEvent(seq, tenants, seq % 3 === 2 ? topics.jobs : topics.leads));
  return events;
}

/** Produces events in chunks (acks from all replicas), keyed as the gateway keys them. Resolves when all are acked. */
export async function produceAll(producer: Producer, events: TrafficEvent[], chunk = 2000): Promise<void> {
  for (let i = 0; i < events.length; i += chunk) {
    const byTopic = new Map<string, { key: string; value: string }[]>();
    for (const e of events.slice(i, i + chunk)) {
      let list = byTopic.get(e.topic);
      if (!list) byTopic.set(e.topic, (list = []));
      list.push({ key: e.key, value: e.value });
    }
    await producer.sendBatch({
      acks: -1,
      topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })),
    });
  }
}

/**
 * Committed records in the topics, read to their end (read committed). Not the sum of high minus low watermarks:
 * replays publish in transactions, whose commit markers take offsets too.
 */
export async function topicsSize(kafka: Kafka, topics: string[]): Promise<number> {
  let total = 0;
  for (const topic of topics) await readToEnd(kafka, topic, () => total++, 120_000);
  return total;
}

/** Watches a consumer group's committed offsets against the topics' high watermarks. */
export async function groupWatcher(kafka: Kafka, groupId: string, topics: string[]) {
  const admin = kafka.admin();
  await admin.connect();
  const high = new Map<string, number>();
  for (const topic of topics) {
    for (const p of await admin.fetchTopicOffsets(topic)) high.set(`${topic}/${p.partition}`, Number(p.high));
  }
  return {
    /** Messages not yet committed by the group. */
    async lag(): Promise<number> {
      let lag = 0;
      for (const { topic, partitions } of await admin.fetchOffsets({ groupId, topics })) {
        for (const p of partitions) {
          const committed = Number(p.offset) < 0 ? 0 : Number(p.offset);
          lag += Math.max(0, (high.get(`${topic}/${p.partition}`) ?? 0) - committed);
        }
      }
      return lag;
    },
    close: () => admin.disconnect(),
  };
}

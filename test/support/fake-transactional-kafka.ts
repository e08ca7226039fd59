import * as kafkajs from 'kafkajs';
import type { Kafka } from 'kafkajs';

const { KafkaJSConnectionError } = kafkajs as unknown as Record<string, new (message: string) => Error>;

/** A transaction the fake broker was asked for: its slot (the transactional id's last part) and what it holds. */
export interface FakeTxn {
  slot: string;
  values: string[];
  committed: boolean;
  /** When it was committed (ms from the fake's start). */
  at?: number;
}

export interface FakeKafkaOptions {
  topic: string;
  /** ms since the scenario's start (fake timers). */
  now: () => number;
  /** Throws while Kafka is unreachable: at connect, listTopics, transaction, after a produce's delay and at commit. */
  reachable?: () => void;
  /** How long each produce takes to be acknowledged. */
  produceMs?: number;
  /** Commits txn (default: committed at once). */
  commit?: (txn: FakeTxn) => Promise<void>;
}

/**
 * A kafka.js `Kafka` as far as createProducer (shared/kafka.ts) uses it, over one single-partition topic: each
 * transaction is recorded with the values it produced, for the unit tests of a send's transaction (attack43).
 */
export function fakeTransactionalKafka({
  topic,
  now,
  reachable = () => undefined,
  produceMs = 0,
  commit,
}: FakeKafkaOptions) {
  const transactions: FakeTxn[] = [];
  const kafka = {
    admin: () => ({
      connect: async () => undefined,
      disconnect: async () => undefined,
      listTopics: async () => {
        reachable();
        return [topic];
      },
    }),
    producer: ({
      transactionalId,
      createPartitioner,
    }: {
      transactionalId: string;
      createPartitioner: () => (args: object) => number;
    }) => {
      const partitioner = createPartitioner();
      const slot = transactionalId.split(':').pop()!;
      return {
        connect: async () => reachable(),
        disconnect: async () => undefined,
        on: () => () => undefined,
        transaction: async () => {
          reachable();
          const txn: FakeTxn = { slot, values: [], committed: false };
          transactions.push(txn);
          return {
            abort: async () => undefined,
            sendBatch: async ({ topicMessages }: { topicMessages: { topic: string; messages: object[] }[] }) => {
              if (produceMs > 0) await new Promise((resolve) => setTimeout(resolve, produceMs));
              reachable();
              for (const { topic: to, messages } of topicMessages) {
                for (const message of messages) {
                  partitioner({
                    topic: to,
                    message,
                    partitionMetadata: [{ partitionId: 0, leader: 0, replicas: [0], isr: [0] }],
                  });
                  txn.values.push(String((message as { value: unknown }).value));
                }
              }
              return [{ topicName: topic, partition: 0, errorCode: 0, baseOffset: String(transactions.length) }];
            },
            commit: async () => {
              if (commit) return commit(txn);
              reachable();
              txn.committed = true;
              txn.at = now();
            },
          };
        },
      };
    },
  };
  return { kafka: kafka as unknown as Kafka, transactions };
}

/** A Temporal duration of activity options ('30s', '2m', '500ms') in ms. */
export function durationMs(duration: unknown): number {
  const m = /^(\d+)(ms|s|m)$/.exec(String(duration));
  if (!m) throw new Error(`unexpected duration ${String(duration)}`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000 }[m[2] as 'ms' | 's' | 'm'];
}

/** A `reachable` for the fake: Kafka refuses connections (kafkajs's connection error) while `down()` holds. */
export function unreachableWhile(down: () => boolean): () => void {
  return () => {
    if (down()) throw new KafkaJSConnectionError('Connection error: connect ECONNREFUSED 127.0.0.1:9092');
  };
}

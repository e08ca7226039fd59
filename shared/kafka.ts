import { Kafka, logLevel as KafkaLogLevel, Partitioners, type Admin, type LogEntry, type Producer } from 'kafkajs';
import type { Logger } from './logger';

const LEVELS: Record<number, 'error' | 'warn' | 'info' | 'debug'> = {
  [KafkaLogLevel.ERROR]: 'error',
  [KafkaLogLevel.WARN]: 'warn',
  [KafkaLogLevel.INFO]: 'info',
  [KafkaLogLevel.DEBUG]: 'debug',
};

/** A kafkajs client whose own logs go through pino (warn and above: kafkajs is chatty at info). */
export function createKafka(brokers: string[], clientId: string, log: Logger): Kafka {
  const kafkaLog = log.child({ lib: 'kafkajs' });
  return new Kafka({
    clientId,
    brokers,
    connectionTimeout: 3000,
    retry: { initialRetryTime: 300, retries: 8, maxRetryTime: 10_000 },
    logLevel: KafkaLogLevel.WARN,
    logCreator:
      () =>
      ({ level, log: entry }: LogEntry) => {
        const { message, ...rest } = entry;
        kafkaLog[LEVELS[level] ?? 'info'](rest, message);
      },
  });
}

/**
 * Creates the topics the service needs (auto-creation is off on the broker). Existing topics are left as they are,
 * so it is safe to call on every start.
 */
export async function ensureTopics(kafka: Kafka, topics: string[], numPartitions: number): Promise<string[]> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const missing = await missingTopics(admin, topics);
    if (missing.length > 0) {
      await admin.createTopics({
        waitForLeaders: true,
        topics: missing.map((topic) => ({ topic, numPartitions, replicationFactor: 1 })),
      });
    }
    return missing;
  } finally {
    await admin.disconnect();
  }
}

/** Which of these topics the cluster does not have. */
export async function missingTopics(admin: Admin, topics: string[]): Promise<string[]> {
  const existing = new Set(await admin.listTopics());
  return [...new Set(topics)].filter((t) => !existing.has(t));
}

/**
 * An idempotent producer (acks from all in-sync replicas, one request in flight per broker so retries never reorder
 * or duplicate). It retries without a count limit, as idempotence requires; callers bound it in time (activity
 * timeouts, the CLI's own run). Keys go to partitions the way the Java client puts them (murmur2, kafkajs' default
 * since 2.0, named here so that kafkajs does not warn about it at every start).
 */
export function createProducer(kafka: Kafka): Producer {
  return kafka.producer({
    createPartitioner: Partitioners.DefaultPartitioner,
    idempotent: true,
    maxInFlightRequests: 1,
    retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 300, maxRetryTime: 10_000 },
  });
}

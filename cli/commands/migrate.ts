import { loadConfig } from '../../shared/config';
import { createKafka, ensureTopics } from '../../shared/kafka';
import { createLogger } from '../../shared/logger';
import { prepareDatabase } from '../../lifecycle/prepare';

/** `migrate`: applies sql/, partitions the journal, and creates the Kafka topics the service uses. */
export async function migrateCommand(): Promise<void> {
  const config = loadConfig();
  const log = createLogger(config.logLevel, 'migrate');
  await prepareDatabase(config.databaseUrl, log, config.journal);
  const created = await ensureTopics(
    createKafka(config.kafka.brokers, config.kafka.clientId, log),
    config.kafka.topics,
    config.kafka.topicPartitions,
    config.kafka.topicReplicationFactor,
  );
  log.info({ created }, created.length ? `Created topics ${created.join(', ')}` : 'Kafka topics present');
}

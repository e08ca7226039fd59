import { KafkaJSConnectionError, KafkaJSProtocolError } from 'kafkajs';

/**
 * kafkajs 2.2.4 asks one broker after another for metadata and answers null when every one of them failed, which
 * `admin.listTopics()` and `fetchTopicMetadata()` destructure into "Cannot destructure property 'topicMetadata' ... as
 * it is null" (kafkajs #461, #549). CI met it at `ingest` start just after a frozen broker was resumed
 * (attack25-ingest-blocked-batch-kafka-frozen): the start failed on a TypeError instead of waiting a moment.
 * patches/kafkajs+2.2.4.patch makes `cluster.metadata()` throw the last broker's error: a connection or timeout error
 * is tried again (within the client's retry settings), anything else (an unknown topic) is thrown as it is.
 *
 * These drive kafkajs's own Cluster with a broker pool whose one broker fails as told: no broker needed.
 */
/* eslint-disable @typescript-eslint/no-require-imports -- kafkajs's internals have no typings */
const Cluster = require('kafkajs/src/cluster') as new (options: object) => KafkaCluster;
/* eslint-enable @typescript-eslint/no-require-imports */

interface KafkaCluster {
  brokerPool: {
    brokers: Record<string, unknown>;
    findBroker(args: { nodeId: string }): Promise<unknown>;
    refreshMetadataIfNecessary(topics: string[]): Promise<void>;
  };
  metadata(args?: { topics?: string[] }): Promise<{ topicMetadata: { topic: string }[] }>;
}

const logger = { namespace: () => logger, debug() {}, info() {}, warn() {}, error() {} };

/** A Cluster whose only broker answers metadata with `answers[i]` on its i-th call (the last one from then on). */
function clusterAnswering(answers: (Error | { topicMetadata: { topic: string }[] })[]) {
  const cluster = new Cluster({
    logger: { ...logger, namespace: () => logger },
    brokers: ['127.0.0.1:1'],
    retry: { retries: 3, initialRetryTime: 1, maxRetryTime: 5 },
  });
  let calls = 0;
  const broker = {
    metadata: () => {
      const answer = answers[Math.min(calls++, answers.length - 1)];
      return answer instanceof Error ? Promise.reject(answer) : Promise.resolve(answer);
    },
  };
  cluster.brokerPool.brokers = { '1': broker };
  cluster.brokerPool.findBroker = () => Promise.resolve(broker);
  cluster.brokerPool.refreshMetadataIfNecessary = () => Promise.resolve();
  return { cluster, calls: () => calls };
}

const down = () => new KafkaJSConnectionError('Connection error: ECONNREFUSED');
const topics = { topicMetadata: [{ topic: 'apexflow.leads.created' }] };

it('a broker that fails a metadata request and then answers: the answer, after tries again', async () => {
  const { cluster, calls } = clusterAnswering([down(), down(), topics]);
  await expect(cluster.metadata()).resolves.toEqual(topics);
  expect(calls()).toBe(3);
});

it('a broker that never answers: the connection error once the retries are spent, never a null', async () => {
  const { cluster, calls } = clusterAnswering([down()]);
  const err = (await cluster.metadata().then(
    () => undefined,
    (e: unknown) => e,
  )) as Error & { cause?: Error };
  expect({ name: err.name, cause: err.cause?.name, calls: calls() }).toEqual({
    name: 'KafkaJSNumberOfRetriesExceeded',
    cause: 'KafkaJSConnectionError',
    calls: 4,
  });
});

it('an unknown topic: its own error at once, not a null and not tried again', async () => {
  // kafkajs builds a protocol error from its error-code table entry (typed as an Error).
  const entry = { type: 'UNKNOWN_TOPIC_OR_PARTITION', code: 3, retriable: true };
  const unknown = new KafkaJSProtocolError(
    Object.assign(new Error('This server does not host this topic-partition'), entry),
  );
  const { cluster, calls } = clusterAnswering([unknown]);
  await expect(cluster.metadata({ topics: ['nope'] })).rejects.toMatchObject({ type: 'UNKNOWN_TOPIC_OR_PARTITION' });
  expect(calls()).toBe(1);
});

import type { Admin, Kafka } from 'kafkajs';
import { publishMessages } from '../../activities/publish';
import type { ReplayMessage } from '../../journal/lineage';
import { createKafka, createProducer, ensureTopics, type ReplayProducer } from '../../shared/kafka';
import { createLogger } from '../../shared/logger';
import { baseConfig, uniqueSuffix } from '../support/env';
import { topicSize } from '../support/journal';

let kafka: Kafka;
let admin: Admin;
let producer: ReplayProducer;
const created: string[] = [];

const message = (topic: string, ref: string): ReplayMessage => ({
  topic,
  key: Buffer.from([0xde, 0xad, 0x00, 0xff]),
  value: JSON.stringify({ ref }),
  headers: { 'x-test': Buffer.from(ref) },
});

async function topic(label: string): Promise<string> {
  const name = `test.${uniqueSuffix()}.publish.${label}`;
  await ensureTopics(kafka, [name], 1);
  created.push(name);
  return name;
}

beforeAll(async () => {
  const config = baseConfig();
  kafka = createKafka(config.kafka.brokers, `publish-test-${uniqueSuffix()}`, createLogger('silent'));
  admin = kafka.admin();
  await admin.connect();
  producer = createProducer(kafka);
  await producer.connect();
});
afterAll(async () => {
  await producer?.disconnect();
  const left = (await admin.listTopics()).filter((t) => created.includes(t));
  if (left.length) await admin.deleteTopics({ topics: left });
  await admin?.disconnect();
});

/** The failure publishMessages threw, with its time. */
async function failureOf(publishing: Promise<void>): Promise<{ err: Record<string, unknown>; ms: number }> {
  const started = Date.now();
  try {
    await publishing;
  } catch (err) {
    return { err: err as Record<string, unknown>, ms: Date.now() - started };
  }
  throw new Error('publishMessages succeeded');
}

it('a topic the broker never had fails at once as non-retryable UnknownTopic naming it', async () => {
  const missing = `test.${uniqueSuffix()}.no.such.topic`;
  const { err, ms } = await failureOf(publishMessages(producer, [message(missing, 'a')]));
  expect(err).toMatchObject({ type: 'UnknownTopic', nonRetryable: true });
  expect(err.message).toContain(`"${missing}"`);
  expect(ms).toBeLessThan(3000);
});

it('a topic deleted mid-replay fails the next publish as UnknownTopic within seconds; other topics keep working', async () => {
  const doomed = await topic('doomed');
  const other = await topic('other');
  await publishMessages(producer, [message(doomed, 'before')]);
  await publishMessages(producer, [message(other, 'before')]);

  await admin.deleteTopics({ topics: [doomed] });
  const { err, ms } = await failureOf(publishMessages(producer, [message(doomed, 'after')]));
  expect(err).toMatchObject({ type: 'UnknownTopic', nonRetryable: true });
  expect(err.message).toContain(`"${doomed}"`);
  expect(ms).toBeLessThan(10_000);

  // kafkajs would keep the deleted topic in every metadata request of this producer and fail all of its sends.
  await publishMessages(producer, [message(other, 'after')]);
  expect(await topicSize(kafka, other)).toBe(2);
}, 30_000);

it('publishes key bytes, value and headers exactly as given', async () => {
  const target = await topic('exact');
  await publishMessages(producer, [message(target, 'exact')]);
  const consumer = kafka.consumer({ groupId: `publish-test-${uniqueSuffix()}` });
  await consumer.connect();
  await consumer.subscribe({ topic: target, fromBeginning: true });
  try {
    const got = await new Promise<{ key: Buffer | null; value: string; header: string }>((resolve) => {
      void consumer.run({
        eachMessage: async ({ message: m }) =>
          resolve({ key: m.key, value: m.value!.toString(), header: String(m.headers?.['x-test']) }),
      });
    });
    expect(got).toEqual({ key: Buffer.from([0xde, 0xad, 0x00, 0xff]), value: '{"ref":"exact"}', header: 'exact' });
  } finally {
    await consumer.disconnect();
  }
}, 30_000);

it('records the topic refuses (larger than its max.message.bytes) fail non-retryable at once, not 25 attempts', async () => {
  const small = `test.${uniqueSuffix()}.publish.small`;
  await admin.createTopics({
    waitForLeaders: true,
    topics: [{ topic: small, numPartitions: 1, configEntries: [{ name: 'max.message.bytes', value: '1024' }] }],
  });
  created.push(small);
  const big = { ...message(small, 'big'), value: JSON.stringify({ ref: 'big', pad: 'x'.repeat(4096) }) };
  const { err, ms } = await failureOf(publishMessages(producer, [big]));
  expect(err).toMatchObject({ type: 'InvalidRequest', nonRetryable: true });
  expect(err.message).toContain('MESSAGE_TOO_LARGE');
  expect(ms).toBeLessThan(5000);
  await publishMessages(producer, [message(small, 'small')]); // the producer is still good for records that fit
}, 30_000);

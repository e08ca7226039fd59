import type { Kafka } from 'kafkajs';
import { createProducer, withSendGuard } from '../../shared/kafka';

/**
 * createProducer's sending() (shared/kafka.ts) takes its slot's epoch (connectTransactional: connect, an empty
 * transaction begun and aborted, which runs InitProducerId with the transactional id) before it asks the send's guard
 * (withSendGuard: a barrier holder's "still held"), and opens the send's transaction only after the guard. So a fence of
 * the producer's scope issued once the guard said "held" bumps an epoch this send already has, and supersedes it. Pinned
 * with a fake kafkajs whose producers record their calls, for a cold slot (its first send) and a renewed one (renew():
 * a new kafkajs producer on the next send). A guard asked before the epoch is taken fails both.
 */
function fakeKafka() {
  const calls: string[] = [];
  let made = 0;
  const kafka = {
    admin: () => ({}),
    producer: ({ transactionalId }: { transactionalId: string }) => {
      const name = `${transactionalId.split(':').pop()}#${++made}`;
      const call = (what: string) => calls.push(`${name} ${what}`);
      return {
        connect: async () => call('connect'),
        disconnect: async () => call('disconnect'),
        on: () => () => undefined,
        transaction: async () => {
          call('transaction');
          return {
            abort: async () => call('abort'),
            commit: async () => call('commit'),
            send: async ({ topic }: { topic: string }) => {
              call('send');
              return [{ topicName: topic, partition: 0, errorCode: 0, baseOffset: '0' }];
            },
          };
        },
      };
    },
  };
  return { kafka: kafka as unknown as Kafka, calls };
}

const record = { topic: 't', messages: [{ partition: 0, value: 'v' }] };

it('takes a cold slot’s epoch, then asks the guard, then opens the send’s transaction', async () => {
  const { kafka, calls } = fakeKafka();
  const producer = createProducer(kafka);
  await producer.connect();
  calls.splice(0);
  await withSendGuard(
    async () => void calls.push('guard'),
    () => producer.send(record),
  );
  // The first send takes slot 7 (slots are taken from the end); connect() took slot 0's epoch only.
  expect(calls).toEqual([
    '7#8 connect',
    '7#8 transaction',
    '7#8 abort',
    'guard',
    '7#8 transaction',
    '7#8 send',
    '7#8 commit',
  ]);
});

it('takes a renewed slot’s epoch on its new kafkajs producer, then asks the guard', async () => {
  const { kafka, calls } = fakeKafka();
  const producer = createProducer(kafka);
  await producer.connect();
  await producer.send(record);
  producer.renew('a topic deleted');
  calls.splice(0);
  await withSendGuard(
    async () => void calls.push('guard'),
    () => producer.send(record),
  );
  // The old kafkajs producer's disconnect is not waited for: where it falls does not matter.
  expect(calls.filter((c) => !c.endsWith('disconnect'))).toEqual([
    '7#9 connect',
    '7#9 transaction',
    '7#9 abort',
    'guard',
    '7#9 transaction',
    '7#9 send',
    '7#9 commit',
  ]);
  expect(calls).toContain('7#8 disconnect');
});

import type { Producer, ProducerBatch } from 'kafkajs';
import { publishMessages } from '../../activities/publish';
import type { ReplayMessage } from '../../journal/lineage';

const message = (topic = 't'): ReplayMessage => ({
  topic,
  key: Buffer.from([0, 255, 1]),
  value: '{"a":1}',
  headers: { h: Buffer.from('v') },
});

/** A kafkajs producer whose sendBatch is what the test says (only sendBatch is used by publishMessages). */
function fakeProducer(sendBatch: (batch: ProducerBatch) => Promise<unknown>): Producer {
  return { sendBatch } as unknown as Producer;
}

it('a cancelled attempt returns at once although the send never ends', async () => {
  const producer = fakeProducer(() => new Promise(() => undefined));
  const controller = new AbortController();
  const started = Date.now();
  const publishing = publishMessages(producer, [message()], { signal: controller.signal });
  setTimeout(() => controller.abort(new Error('activity cancelled: TIMED_OUT')), 50);
  await expect(publishing).rejects.toThrow('activity cancelled: TIMED_OUT');
  expect(Date.now() - started).toBeLessThan(1000);
});

it('a send that fails after the attempt was cancelled leaves no unhandled rejection', async () => {
  let fail!: (err: Error) => void;
  const producer = fakeProducer(() => new Promise((_, reject) => (fail = reject)));
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  try {
    const controller = new AbortController();
    const publishing = publishMessages(producer, [message()], { signal: controller.signal });
    controller.abort(new Error('cancelled'));
    await expect(publishing).rejects.toThrow('cancelled');
    fail(new Error('KafkaJSNumberOfRetriesExceeded'));
    await new Promise((r) => setTimeout(r, 20));
    expect(unhandled).toEqual([]);
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
});

it('an attempt already cancelled sends nothing', async () => {
  const sendBatch = jest.fn(() => Promise.resolve([]));
  const controller = new AbortController();
  controller.abort(new Error('cancelled before'));
  await expect(publishMessages(fakeProducer(sendBatch), [message()], { signal: controller.signal })).rejects.toThrow(
    'cancelled before',
  );
  expect(sendBatch).not.toHaveBeenCalled();
});

it('passes key bytes and headers through unchanged, one topicMessages entry per topic, acks from all replicas', async () => {
  const sendBatch = jest.fn((_batch: ProducerBatch) => Promise.resolve([]));
  const messages = [message('a'), { ...message('b'), key: null }, message('a')];
  await publishMessages(fakeProducer(sendBatch), messages);
  const batch = sendBatch.mock.calls[0][0];
  expect(batch.acks).toBe(-1);
  expect(batch.topicMessages).toEqual([
    { topic: 'a', messages: [messages[0], messages[2]].map(({ key, value, headers }) => ({ key, value, headers })) },
    { topic: 'b', messages: [{ key: null, value: '{"a":1}', headers: { h: Buffer.from('v') } }] },
  ]);
  expect(batch.topicMessages![0].messages[0].key).toBe(messages[0].key); // the same Buffer, not a copy or a string
});

it('a send that fails without cancellation fails the attempt with its error', async () => {
  const producer = fakeProducer(() => Promise.reject(new Error('broker down')));
  await expect(publishMessages(producer, [message()], { signal: new AbortController().signal })).rejects.toThrow(
    'broker down',
  );
});

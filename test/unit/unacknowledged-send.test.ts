import fc from 'fast-check';
import type { Message, RecordMetadata, TopicMessages } from 'kafkajs';
import { refuseUnacknowledged } from '../../shared/kafka';

// A send is only as good as its acknowledgements: kafkajs 2.2.4 can resolve a send after a broker failure without
// having sent the partitions that moved to brokers that had already answered (kafkajs #1303). The producer checks
// every partition a send put messages on against the acknowledgements and fails the send if one is missing.

const ack = (topicName: string, partition: number): RecordMetadata => ({ topicName, partition, errorCode: 0 });

it('passes a send whose every partition was acknowledged, and names the partitions that were not', () => {
  const a: Message = { value: 'a' };
  const b: Message = { value: 'b' };
  const c: Message = { value: 'c', partition: 2 };
  const sent: TopicMessages[] = [
    { topic: 'leads', messages: [a, b] },
    { topic: 'jobs', messages: [c] },
  ];
  const partitionOf = (m: Message) => (m === a ? 0 : m === b ? 1 : undefined);
  expect(() =>
    refuseUnacknowledged(sent, [ack('leads', 0), ack('leads', 1), ack('jobs', 2)], partitionOf),
  ).not.toThrow();
  expect(() => refuseUnacknowledged(sent, [ack('leads', 0), ack('jobs', 2)], partitionOf)).toThrow(
    'Kafka acknowledged the send without partition(s) leads[1]',
  );
  // The same partition number on another topic is no acknowledgement.
  expect(() => refuseUnacknowledged(sent, [ack('leads', 0), ack('leads', 1), ack('leads', 2)], partitionOf)).toThrow(
    /jobs\[2\]/,
  );
  // A message whose partition is unknown is never taken as sent.
  expect(() => refuseUnacknowledged(sent, [ack('leads', 0), ack('leads', 1), ack('jobs', 2)], () => undefined)).toThrow(
    /leads\[\?\]/,
  );
});

it('throws exactly when some message went to a partition without an acknowledgement (generated sends)', () => {
  const topic = fc.constantFrom('leads', 'jobs', 'accounts');
  fc.assert(
    fc.property(
      fc.array(fc.record({ topic, partition: fc.nat(5) }), { maxLength: 30 }),
      fc.array(fc.record({ topic, partition: fc.nat(5) }), { maxLength: 20 }),
      (messages, acks) => {
        const byTopic = new Map<string, Message[]>();
        const partition = new Map<Message, number>();
        for (const m of messages) {
          const message: Message = { value: `${m.topic}:${m.partition}` };
          partition.set(message, m.partition);
          byTopic.set(m.topic, [...(byTopic.get(m.topic) ?? []), message]);
        }
        const sent = [...byTopic].map(([t, ms]) => ({ topic: t, messages: ms }));
        const acked = new Set(acks.map((a) => `${a.topic}/${a.partition}`));
        const complete = messages.every((m) => acked.has(`${m.topic}/${m.partition}`));
        const check = () =>
          refuseUnacknowledged(
            sent,
            acks.map((a) => ack(a.topic, a.partition)),
            (m) => partition.get(m),
          );
        if (complete) expect(check).not.toThrow();
        else expect(check).toThrow(/acknowledged the send without/);
      },
    ),
  );
});

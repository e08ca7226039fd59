import type { Kafka } from 'kafkajs';
import { createProducer } from '../../shared/kafka';

/**
 * attack43 — Invariant 2 (memory per producer bounded: listeners left behind).
 *
 * Attack: createProducer's on() (shared/kafka.ts, ~lines 482-495) keeps, per slot, one remover per LISTENER
 * (`slot.removers: Map<listener, remover>`) and, in `listeners`, [event, listener] pairs found by listener alone. One
 * function listening to two events (an ordinary "log every producer event" handler) is registered twice on each
 * kafkajs producer, but the slot remembers only the second registration's remover. Removing the first registration
 * then takes the SECOND one off the kafkajs producers and leaves the first attached; removing the second as well
 * leaves the first attached to all 8 kafkajs producers for good (and the producer's own `listeners` list says none).
 *
 * Reproduction: producer.on('producer.connect', l) and producer.on('producer.disconnect', l), then both removers
 * called: count the listeners the 8 kafkajs producers still hold.
 *
 * Observed: 8 registrations of l remain (one per slot, on 'producer.connect'); after the first remover alone,
 * 'producer.disconnect' (still wanted) had been taken off and 'producer.connect' (removed) stayed.
 * Expected: none after both removers; after the first, only 'producer.disconnect' on each slot.
 *
 * Suspected cause: shared/kafka.ts on(): `slot.removers.set(listener, …)` keyed by listener only (the second
 * registration overwrites the first's remover), and the remover's `listeners.findIndex(([, l]) => l === listener)`
 * ignores the event (and splices index -1, the last entry, when called twice).
 *
 * Fixed: each `on` call is a registration of its own (event and listener), and its remover takes off that one.
 */
function fakeKafka() {
  const attached: { event: string; listener: unknown }[] = [];
  const kafka = {
    admin: () => ({}),
    producer: () => ({
      connect: async () => undefined,
      disconnect: async () => undefined,
      on: (event: string, listener: unknown) => {
        const entry = { event, listener };
        attached.push(entry);
        return () => {
          const i = attached.indexOf(entry);
          if (i >= 0) attached.splice(i, 1);
        };
      },
      transaction: async () => ({ abort: async () => undefined }),
    }),
  };
  return { kafka: kafka as unknown as Kafka, attached };
}

it('takes off exactly the registration whose remover is called, for a listener of two events', () => {
  const { kafka, attached } = fakeKafka();
  const producer = createProducer(kafka);
  const listener = () => undefined;
  const offConnect = producer.on('producer.connect', listener);
  const offDisconnect = producer.on('producer.disconnect', listener);
  const onSlots = () =>
    attached
      .filter((a) => a.listener === listener)
      .map((a) => a.event)
      .sort();

  offConnect();
  const afterFirst = onSlots();
  offDisconnect();
  const afterBoth = onSlots();
  expect({ afterFirst, afterBoth }).toEqual({
    afterFirst: Array.from({ length: 8 }, () => 'producer.disconnect'),
    afterBoth: [],
  });
});

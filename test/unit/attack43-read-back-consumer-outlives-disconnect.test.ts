import type { Kafka, RecordMetadata } from 'kafkajs';
import { committedReadBack } from '../../shared/kafka';

/**
 * attack43 — Invariant 2 (bounded: no consumer or group left behind per producer).
 *
 * Attack: committedReadBack (shared/kafka.ts) gives up after its timeout (READ_BACK_MS, 15 s) and disconnects its
 * consumer. If the time runs out while `consumer.run()` is still joining the group (a slow or frozen group
 * coordinator: the outages that lead to a read-back in the first place; or group.initial.rebalance.delay.ms), kafkajs
 * 2.2.4 cannot stop it:
 *   - consumer.disconnect() -> runner.stop(): `if (!this.running) return` (consumer/runner.js): the runner sets running
 *     only once its join and sync have ended, so the stop does nothing, and the consumer forgets the runner;
 *   - the join then ends, the runner sets running and schedules its fetch loop: a consumer nobody can stop any more
 *     fetches the replay topic's partition for good and stays a live member of its read-back group.
 * Shown with kafkajs's own Runner by the attack (start, then stop while the join is pending: after stop() returned,
 * the runner became running once the join ended and fetched again and again). Here: a consumer whose run() (the join)
 * ends only after the read-back's time ran out.
 *
 * Observed (before): disconnect was called while run() was still pending (the runner left running after it).
 *
 * Fixed: committedReadBack waits for a pending run() to end (within its timeout again) before it disconnects, so
 * kafkajs's stop finds the runner started and stops it.
 */

const acknowledged: RecordMetadata[] = [{ topicName: 'replay-target', partition: 0, errorCode: 0, baseOffset: '10' }];

it('disconnects its consumer only once a run still joining its group has ended, within a bound', async () => {
  const events: string[] = [];
  let joined!: () => void;
  const kafka = {
    consumer: () => ({
      connect: async () => undefined,
      subscribe: async () => undefined,
      run: () =>
        new Promise<void>((resolve) => {
          events.push('run: joining');
          joined = () => {
            events.push('run: joined (the runner is started)');
            resolve();
          };
        }),
      seek: () => undefined,
      disconnect: async () => void events.push('disconnect'),
    }),
  } as unknown as Kafka;
  const reading = committedReadBack(kafka, acknowledged, 'scope:read-back', undefined, {
    timeoutMs: 200,
    disconnectTimeoutMs: 100,
  });
  // The read-back's time runs out while the join goes on; the join ends 100 ms later.
  setTimeout(() => joined(), 300);
  expect(await reading).toBeUndefined();
  expect(events).toEqual(['run: joining', 'run: joined (the runner is started)', 'disconnect']);
});

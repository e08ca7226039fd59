/**
 * attack43 — Invariant 2 (bounded: no consumer or group left behind per producer).
 *
 * Attack: committedReadBack (shared/kafka.ts ~lines 709-737) gives up after READ_BACK_MS (15 s) and disconnects its
 * consumer (`finally`: done = true, consumer.disconnect()). Its `done` flag only keeps it from starting subscribe/run
 * AFTER connect; if the 15 s run out while `consumer.run()` is still joining the group (a slow or frozen group
 * coordinator: the outages that lead to a read-back in the first place; or group.initial.rebalance.delay.ms), kafkajs
 * 2.2.4 cannot stop it:
 *   - consumer.disconnect() -> consumer stop(): `if (runner) { await runner.stop(); runner = null; … }`
 *     (consumer/index.js ~line 112);
 *   - runner.stop(): `if (!this.running) return` (consumer/runner.js ~line 174): the runner sets running only once
 *     joinAndSync has ended (runner.js start(), ~line 86), so the stop does nothing, and the consumer forgets it;
 *   - cluster.disconnect() waits for the JoinGroup in flight (network/connection.js disconnect:
 *     waitForPendingRequests), and any later request reconnects (network/connectionPool.js getConnection);
 *   - the join then ends, the runner sets running = true and schedules its fetch loop: a consumer that nobody can stop
 *     any more fetches the replay topic's partition for good, heartbeats (a live member of a read-back group), and
 *     committedReadBack's eachBatch keeps adding every offset it reads to its `delivered` Set.
 * This test drives kafkajs's own Runner the way consumer.run/disconnect do (start, then stop while joinAndSync is
 * pending), with only the consumer group faked.
 *
 * With a broker: set group.initial.rebalance.delay.ms=20000 (or SIGSTOP the read-back group's coordinator for 16 s
 * right after its JoinGroup), run attack42's fenced-re-ask setup so that a read-back starts; the send rejects as
 * unknown after 15 s; then `kafka-consumer-groups --describe --group '<scope>:read-back:<uuid>'` shows the member
 * still active minutes later, and the worker's fetch requests to the partition go on.
 *
 * Observed: after stop() returned, the runner becomes running once the join ends and fetches again and again.
 * Expected: a runner stopped (consumer disconnected) before its join ended never fetches.
 *
 * Suspected cause: shared/kafka.ts committedReadBack: disconnect while run() is pending relies on kafkajs stopping a
 * runner that has not started (it does not); nothing waits for run() to end before disconnecting, or stops it after.
 */

// eslint-disable-next-line @typescript-eslint/no-require-imports
const Runner = require('kafkajs/src/consumer/runner') as new (opts: object) => {
  running: boolean;
  start(): Promise<void>;
  stop(): Promise<void>;
};
// eslint-disable-next-line @typescript-eslint/no-require-imports
const InstrumentationEventEmitter = require('kafkajs/src/instrumentation/emitter') as new () => object;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { createLogger, LEVELS } = require('kafkajs/src/loggers') as {
  createLogger: (opts: object) => object;
  LEVELS: Record<string, number>;
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

it('does not fetch after a stop that came while the group was being joined', async () => {
  let fetches = 0;
  let joined!: () => void;
  const joining = new Promise<void>((resolve) => (joined = resolve));
  const runner = new Runner({
    logger: createLogger({ level: LEVELS.NOTHING, logCreator: () => () => undefined }),
    consumerGroup: {
      groupId: 'scope:read-back:1',
      memberId: 'm',
      connect: async () => undefined,
      joinAndSync: () => joining,
      getNodeIds: () => [1],
      fetch: async () => {
        fetches++;
        await sleep(5);
        return [];
      },
      heartbeat: async () => undefined,
      leave: async () => undefined,
      commitOffsetsIfNecessary: async () => undefined,
      commitOffsets: async () => undefined,
    },
    instrumentationEmitter: new InstrumentationEventEmitter(),
    eachBatch: async () => undefined,
    autoCommit: false,
    concurrency: 1,
    onCrash: () => undefined,
  });

  // consumer.run(): start() waits for the join.
  const started = runner.start();
  await sleep(20);
  // READ_BACK_MS ran out: committedReadBack's finally disconnects the consumer, whose stop() stops its runner.
  await runner.stop();
  // The coordinator answers the join afterwards.
  joined();
  await started;
  await sleep(200);
  const after = { running: runner.running, fetches };
  // Clean up the loop this test started (a real consumer has nobody left to do it).
  await runner.stop();
  expect(after).toEqual({ running: false, fetches: 0 });
});

import { startLagMonitor, type LagMonitor } from '../../ingest/lag-monitor';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';

/**
 * Attack on invariant 4 (docs/integrity.md): a transactional producer that aborts a transaction leaves a partition
 * whose tail is aborted records and an abort marker. kafkajs filters them out (read_committed) and never calls
 * eachBatch for that fetch, and with autoCommit off the consumer never commits past them: the committed offset stays
 * below the high watermark forever although everything readable was journaled. The lag monitor then reports lag on
 * a partition that is fully consumed and, after INGEST_STALL_SECONDS, marks it stalled: /health answers 503
 * "degraded" and CrmEventsPartitionStalled fires, and stays so until an ordinary record happens to arrive there.
 */

const STALL_SECONDS = 3;

let h: SinkHarness;
let monitor: LagMonitor;

beforeAll(async () => {
  h = await createSinkHarness('attack-aborted-tx');
  await h.startIngest();
  monitor = startLagMonitor({
    kafka: h.kafka,
    groupId: h.config.kafka.groupId,
    topics: h.config.kafka.topics,
    metrics: h.metrics,
    log: h.log,
    intervalMs: 200,
    stallSeconds: STALL_SECONDS,
  });
});

afterAll(async () => {
  await monitor?.stop();
  await h?.close();
});

it('a fully consumed partition whose last transaction was aborted is neither lagging nor stalled', async () => {
  const { leads } = h.topics;
  // One ordinary record, journaled and committed.
  await h.send(leads, [{ tenant_id: 'acme', n: 1 }], { partition: 0 });
  await eventually(async () => (await h.journalCount()) === 1, 'the ordinary record journaled');

  // Then a transaction that is aborted: nothing in it may be journaled, and nothing is left to consume.
  const producer = h.kafka.producer({
    transactionalId: `attack-tx-${Date.now()}`,
    idempotent: true,
    maxInFlightRequests: 1,
  });
  await producer.connect();
  try {
    const tx = await producer.transaction();
    await tx.send({ topic: leads, messages: [{ partition: 0, value: JSON.stringify({ tenant_id: 'acme', n: 2 }) }] });
    await tx.abort();
  } finally {
    await producer.disconnect();
  }

  // Give the consumer time to read past the aborted records and the monitor time to decide.
  await new Promise((r) => setTimeout(r, (STALL_SECONDS + 3) * 1000));
  expect(await h.journalCount()).toBe(1);
  expect(await h.dlqCount()).toBe(0);

  // Judged on a fresh reading: on a busy machine one of the monitor's Kafka reads may time out ("consumer lag
  // unknown"), which says nothing about this partition. With the bug the check keeps failing (stalled) until the end.
  await eventually(async () => (await monitor.check()) === undefined, 'the lag monitor healthy on a fresh reading');
  const lag = Object.fromEntries(
    (await h.metrics.consumerLag.get()).values.map((v) => [`${v.labels.topic}/${v.labels.partition}`, v.value]),
  );
  expect(monitor.stalled()).toEqual([]);
  expect(lag[`${leads}/0`]).toBe(0);
});

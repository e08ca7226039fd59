import { exited, spawnIngest } from '../support/ingest-process';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';
import { exactlyOnce, produceSeq, tallySeq } from '../support/traffic';

let h: SinkHarness;

beforeAll(async () => {
  // Small fetches (~150 events per batch) so that the stop and the kill land between batches, not after the last.
  h = await createSinkHarness('exactlyonce', {
    KAFKA_SESSION_TIMEOUT_MS: '8000',
    INGEST_FETCH_BYTES_PER_PARTITION: '65536',
  });
});
afterAll(() => h.close());

const produce = (from: number, count: number) => produceSeq(h, from, count);
const tally = (from: number, count: number) => tallySeq(h, from, count);

it('journals 10,000 events exactly once across a consumer restart in the middle', async () => {
  await produce(0, 10_000);
  await h.startIngest();
  await eventually(async () => (await tally(0, 10_000)).total >= 3000, 'a third of the events', 60_000, 50);
  await h.stopIngest(); // graceful: finishes and commits the batch in flight
  const atRestart = (await tally(0, 10_000)).total;
  expect(atRestart).toBeLessThan(10_000);
  await h.startIngest();
  await eventually(async () => (await tally(0, 10_000)).total === 10_000, 'all 10,000 events', 120_000);
  await new Promise((r) => setTimeout(r, 2000)); // a redelivery, if any, would land now
  await h.stopIngest();
  expect(await tally(0, 10_000)).toEqual(exactlyOnce(10_000));
  expect(await h.dlqCount()).toBe(0);
});

it('loses and doubles nothing when the ingest process is SIGKILLed mid-stream and restarted', async () => {
  const env = {
    DATABASE_URL: h.config.databaseUrl,
    KAFKA_TOPICS: h.config.kafka.topics.join(','),
    KAFKA_GROUP_ID: h.config.kafka.groupId,
    KAFKA_SESSION_TIMEOUT_MS: '8000', // the killed member's partitions move on after 8 s instead of 30
    INGEST_FETCH_BYTES_PER_PARTITION: h.config.ingest.fetchBytesPerPartition.toString(),
  };
  await produce(20_000, 10_000);
  let child = spawnIngest(env);
  await eventually(
    async () => (await tally(20_000, 10_000)).total >= 2000,
    'the child to journal some events',
    60_000,
    20,
  );
  child.kill('SIGKILL');
  await exited(child);
  const atCrash = (await tally(20_000, 10_000)).total;
  expect(atCrash).toBeLessThan(10_000);
  child = spawnIngest(env);
  try {
    await eventually(async () => (await tally(20_000, 10_000)).total === 10_000, 'all events after the crash', 120_000);
    await new Promise((r) => setTimeout(r, 2000));
  } finally {
    child.kill('SIGTERM');
    expect(await exited(child)).toBe(0); // graceful shutdown on SIGTERM
  }
  expect(await tally(20_000, 10_000)).toEqual(exactlyOnce(10_000));
  expect(await h.dlqCount()).toBe(0);
});

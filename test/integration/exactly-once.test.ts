import { makeEvent } from '../../cli/traffic';
import { exited, spawnIngest } from '../support/ingest-process';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';

let h: SinkHarness;

beforeAll(async () => {
  h = await createSinkHarness('exactlyonce', { KAFKA_SESSION_TIMEOUT_MS: '8000' });
});
afterAll(() => h.close());

/**
 * Produces `count` realistic events numbered from `from` (payload.seq), spread over 50 tenants, both topics (mapped
 * to this file's private topics by kind) and 3 partitions.
 */
async function produce(from: number, count: number): Promise<void> {
  for (let i = 0; i < count; i += 500) {
    const events = Array.from({ length: Math.min(500, count - i) }, (_, j) => makeEvent(from + i + j, 50));
    await h.producer.sendBatch({
      acks: -1,
      topicMessages: [
        { topic: h.topics.leads, messages: events.filter((e) => e.topic.includes('leads')).map(({ key, value }) => ({ key, value })) },
        { topic: h.topics.jobs, messages: events.filter((e) => e.topic.includes('jobs')).map(({ key, value }) => ({ key, value })) },
      ],
    });
  }
}

/** Journal rows for seq in [from, from+count): total, distinct seqs, distinct Kafka coordinates. */
async function tally(from: number, count: number) {
  const { rows } = await h.pool.query<{ total: number; seqs: number; coords: number }>(
    `SELECT count(*)::int AS total, count(DISTINCT payload->>'seq')::int AS seqs,
            count(DISTINCT (topic, kafka_partition, kafka_offset))::int AS coords
       FROM event_journal WHERE (payload->>'seq')::int >= $1 AND (payload->>'seq')::int < $2`,
    [from, from + count],
  );
  return rows[0];
}

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
  expect(await tally(0, 10_000)).toEqual({ total: 10_000, seqs: 10_000, coords: 10_000 });
  expect(await h.dlqCount()).toBe(0);
});

it('loses and doubles nothing when the ingest process is SIGKILLed mid-stream and restarted', async () => {
  const env = {
    DATABASE_URL: h.config.databaseUrl,
    KAFKA_TOPICS: h.config.kafka.topics.join(','),
    KAFKA_GROUP_ID: h.config.kafka.groupId,
    KAFKA_SESSION_TIMEOUT_MS: '8000', // the killed member's partitions move on after 8 s instead of 30
  };
  await produce(20_000, 10_000);
  let child = spawnIngest(env);
  await eventually(async () => (await tally(20_000, 10_000)).total >= 2000, 'the child to journal some events', 60_000, 20);
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
  expect(await tally(20_000, 10_000)).toEqual({ total: 10_000, seqs: 10_000, coords: 10_000 });
  expect(await h.dlqCount()).toBe(0);
});

import { exited, spawnIngest } from '../support/ingest-process';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';
import { stack } from '../support/stack';
import { exactlyOnce, produceSeq, tallySeq } from '../support/traffic';

let h: SinkHarness;
let env: Record<string, string>;

beforeAll(async () => {
  h = await createSinkHarness('faults', { KAFKA_SESSION_TIMEOUT_MS: '8000' });
  env = {
    DATABASE_URL: h.config.databaseUrl,
    KAFKA_TOPICS: h.config.kafka.topics.join(','),
    KAFKA_GROUP_ID: h.config.kafka.groupId,
    KAFKA_SESSION_TIMEOUT_MS: '8000',
  };
});
afterAll(async () => {
  stack('up'); // leave every component running for the next suite, whatever happened
  await h?.close();
});

const produce = (from: number, count: number) => produceSeq(h, from, count, 20, 250);
const tally = (from: number, count: number) => tallySeq(h, from, count);

it('Kafka broker SIGKILLed and restarted mid-ingest: every acked event journaled once, no DLQ row', async () => {
  const child = spawnIngest(env);
  try {
    await produce(0, 3000);
    await eventually(async () => (await tally(0, 3000)).total > 500, 'ingestion under way', 60_000, 50);
    stack('kill', 'kafka');
    await new Promise((r) => setTimeout(r, 3000));
    stack('up', 'kafka');
    await produce(3000, 2000); // the idempotent producer rides out the restart too
    await eventually(async () => (await tally(0, 5000)).total === 5000, 'all 5000 events', 180_000);
    await new Promise((r) => setTimeout(r, 2000));
    expect(await tally(0, 5000)).toEqual(exactlyOnce(5000));
    expect(await h.dlqCount()).toBe(0);
  } finally {
    child.kill('SIGTERM');
    await exited(child);
  }
});

it('Postgres SIGKILLed and restarted mid-ingest: every event journaled once, no DLQ row', async () => {
  const child = spawnIngest(env);
  try {
    await produce(10_000, 4000);
    await eventually(async () => (await tally(10_000, 4000)).total > 500, 'ingestion under way', 60_000, 50);
    stack('kill', 'postgres');
    await new Promise((r) => setTimeout(r, 3000));
    stack('up', 'postgres');
    await eventually(async () => (await tally(10_000, 4000)).total === 4000, 'all 4000 events', 180_000);
    await new Promise((r) => setTimeout(r, 2000));
    expect(await tally(10_000, 4000)).toEqual(exactlyOnce(4000));
    expect(await h.dlqCount()).toBe(0);
  } finally {
    child.kill('SIGTERM');
    await exited(child);
  }
});

it('two ingest instances share the partitions; one is SIGKILLed and the other takes over, nothing lost or doubled', async () => {
  const a = spawnIngest(env);
  const b = spawnIngest(env);
  try {
    await produce(20_000, 3000);
    await eventually(async () => (await tally(20_000, 3000)).total === 3000, 'the first wave', 120_000);
    // Both instances are members of the group and share its partitions.
    const admin = h.kafka.admin();
    await admin.connect();
    const members = await eventually(
      async () => {
        const { groups } = await admin.describeGroups([env.KAFKA_GROUP_ID]);
        return groups[0].state === 'Stable' && groups[0].members.length === 2 ? groups[0].members : undefined;
      },
      'a stable group of two',
      60_000,
    );
    await admin.disconnect();
    expect(members).toHaveLength(2);
    a.kill('SIGKILL');
    await exited(a);
    await produce(23_000, 3000);
    await eventually(async () => (await tally(20_000, 6000)).total === 6000, 'the survivor to take over', 120_000);
    await new Promise((r) => setTimeout(r, 2000));
    expect(await tally(20_000, 6000)).toEqual(exactlyOnce(6000));
  } finally {
    a.kill('SIGKILL');
    b.kill('SIGTERM');
    await Promise.all([exited(a), exited(b)]);
  }
});

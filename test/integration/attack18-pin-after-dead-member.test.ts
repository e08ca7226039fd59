import { exited, spawnIngest } from '../support/ingest-process';
import { partitionProgress } from '../support/coordinates';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';

/**
 * attack18 against 044e31a (test/faults/attack18-topic-added-after-kill.test.ts, flaky in a busy CI run)
 *
 * Invariant (docs/integrity.md section 1): with KAFKA_FROM_BEGINNING=false the group's start is durable before the
 * first fetch; a pin that waited out a member that died in the group then commits the start and ingest starts.
 *
 * Attack: a member that committed nothing dies in the group (SIGKILLed while its first pin's temporary consumer was
 * in the group, before that consumer's commit landed). Ingest starts at once on two topics that have no committed
 * start, so its pin must wait out the dead member's 30 s session and then commit both topics.
 *
 * Observed: startIngest rejects after 40 s with GroupStartError "... within 40 s: no answer in time" (the process
 * exits 1; the fault test then waited 90 s for a member that was gone). The group was Empty 30 s after the kill; the
 * pin's first setOffsets (topic A) took 5 s, its second (topic B) was cut short by the deadline.
 *
 * Suspected cause: ingest/group-start.ts. kafkajs's setOffsets joins the group with a temporary consumer per topic,
 * which pauses everything and stops only after its first fetch, and a fetch with everything paused sleeps the
 * consumer's maxWaitTimeInMs (5 s by default; the admin client cannot set it): at least 5 s per topic. The deadline
 * (the dead member's session + 10 s) and the attempt bound (15 s for all topics' setOffsets together) left room for
 * under two topics after the session, and none under load.
 *
 * Fixed: the deadline adds that cost for every topic (groupStartDeadlineMs), and each setOffsets gets its own bound.
 */
let h: SinkHarness;
const DEAD_SESSION_MS = 30_000;

beforeEach(async () => {
  h = await createSinkHarness('pinafterdead', { KAFKA_FROM_BEGINNING: 'false' });
}, 60_000);
afterEach(async () => {
  await h?.close(); // stops ingest
});

/** A member of the group that committed nothing, SIGKILLed: it stays in the group for its session. */
async function deadMemberThatCommittedNothing(): Promise<void> {
  // From the beginning and with nothing sent, it joins without a pin and commits nothing.
  const child = spawnIngest({
    DATABASE_URL: h.config.databaseUrl,
    KAFKA_TOPICS: h.topics.leads,
    KAFKA_GROUP_ID: h.config.kafka.groupId,
    KAFKA_FROM_BEGINNING: 'true',
    KAFKA_SESSION_TIMEOUT_MS: String(DEAD_SESSION_MS),
  });
  const admin = h.kafka.admin();
  await admin.connect();
  try {
    await eventually(
      async () => (await admin.describeGroups([h.config.kafka.groupId])).groups[0]?.state === 'Stable',
      'the member to join the group',
      60_000,
      50,
    );
  } finally {
    await admin.disconnect();
  }
  child.kill('SIGKILL');
  await exited(child);
}

it('ingest started beside a dead member commits the start of two topics once the member is gone', async () => {
  await deadMemberThatCommittedNothing();
  const started = Date.now();
  const outcome = await h.startIngest().then(
    () => 'started',
    (err: Error) => `${err.name}: ${err.message}`,
  );
  const startMs = Date.now() - started;
  const assigned = await eventually(async () => h.ingest?.assignment().length === 6, 'the six partitions', 10_000)
    .then(() => 6)
    .catch(() => h.ingest?.assignment().length);
  const unpinned = (await partitionProgress(h.kafka, h.config.kafka.groupId, h.config.kafka.topics))
    .filter((p) => p.committed < 0n)
    .map((p) => `${p.topic}/${p.partition}`);
  expect({ outcome, unpinned, assigned }).toEqual({
    outcome: 'started',
    unpinned: [],
    assigned: 6,
  });
  expect(startMs).toBeGreaterThan(DEAD_SESSION_MS - 5000); // it did wait out the dead member
}, 180_000);

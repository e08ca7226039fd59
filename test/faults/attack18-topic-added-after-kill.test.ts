import { AssignerProtocol } from 'kafkajs';
import { partitionProgress, produceRecords, type Coordinates } from '../support/coordinates';
import { ingestChildren } from '../support/ingest-children';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';

/**
 * attack18: with KAFKA_FROM_BEGINNING=false, ingest commits the group's start before its consumer joins
 * (ingest/group-start.ts), but skips it whenever the group has members ("members hold the start"). A member of a
 * SIGKILLed process stays in the group until its session times out, and it holds no start for a topic it was never
 * subscribed to. So: ingest runs on topic A, is SIGKILLed (an OOM kill during a deploy), and comes back at once with
 * KAFKA_TOPICS=A,B. Its pin sees the dead member, commits nothing, and B's start lives only in memory again (the
 * attack17 state): stopped before B's first batch, the records sent to B meanwhile are never journaled.
 * Invariant (docs/integrity.md section 1): every record sent after ingest started on a topic is journaled once.
 */
let h: SinkHarness;
const children = ingestChildren(() => h);

beforeEach(async () => {
  h = await createSinkHarness('topicadded', { KAFKA_FROM_BEGINNING: 'false' });
}, 60_000);
afterEach(async () => {
  await children.killAll();
  await h?.close();
});

const ingest = (topics: string[]) => children.start(topics);
const stop = (child: ReturnType<typeof ingest>, signal: NodeJS.Signals) => children.stop(child, signal);

/** `count` records on each of the three partitions of `topic`, payload.seq from `from`; their coordinates. */
async function produce(topic: string, from: number, count: number): Promise<Coordinates[]> {
  const records = Array.from({ length: 3 * count }, (_, i) => ({
    partition: i % 3,
    key: Buffer.from(`k-${from + i}`),
    value: Buffer.from(JSON.stringify({ tenant_id: 'acme', seq: from + i })),
  }));
  return produceRecords(h.upstream, topic, records);
}

const journaled = async (fromSeq: number, toSeq: number) =>
  (
    await h.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM event_journal WHERE (payload->>'seq')::int >= $1 AND (payload->>'seq')::int < $2`,
      [fromSeq, toSeq],
    )
  ).rows[0].n;

it('a topic added when ingest comes back from a SIGKILL gets a committed start; what is sent to it is journaled', async () => {
  const { leads, jobs } = h.topics;
  await produce(jobs, 0, 2); // history of B from before ingest knew it: not to be journaled

  const first = ingest([leads]);
  await eventually(
    async () => (await partitionProgress(h.kafka, h.config.kafka.groupId, [leads])).every((p) => p.committed >= 0n),
    'the first process to pin the start of topic A',
    60_000,
    250,
  );
  await stop(first, 'SIGKILL');

  // Back at once (its dead member still in the group), now with topic B too.
  const second = ingest([leads, jobs]);
  // It runs: a record sent to A after it came back is journaled (after the dead member timed out of the group).
  await produce(leads, 1000, 1);
  await eventually(async () => (await journaled(1000, 1003)) === 3, 'the second process consuming A', 90_000, 500);

  const unpinned = (await partitionProgress(h.kafka, h.config.kafka.groupId, [jobs]))
    .filter((p) => p.committed < 0n)
    .map((p) => `${p.topic}/${p.partition}`);

  // Stopped cleanly before its first batch on B; what is sent to B meanwhile must be journaled when it is back.
  await stop(second, 'SIGTERM');
  const sent = await produce(jobs, 2000, 5);
  ingest([leads, jobs]);
  await eventually(
    async () => (await partitionProgress(h.kafka, h.config.kafka.groupId, [jobs])).every((p) => p.committed >= 0n),
    'the third process to start on B',
    60_000,
    250,
  );
  const after = await produce(jobs, 3000, 1);
  sent.push(...after);
  await eventually(async () => (await journaled(3000, 3003)) === 3, 'the records sent to B after', 60_000, 500);
  await new Promise((r) => setTimeout(r, 1500)); // anything still on its way lands now

  const { rows } = await h.pool.query<{ at: string }>(
    `SELECT topic || '/' || kafka_partition || '/' || kafka_offset AS at FROM event_journal WHERE topic = $1 ORDER BY 1`,
    [jobs],
  );
  const at = (c: Coordinates) => `${c.topic}/${c.partition}/${c.offset}`;
  expect({ unpinned, journaled: rows.map((r) => r.at).sort() }).toEqual({
    unpinned: [],
    journaled: sent.map(at).sort(),
  });
}, 240_000);

/** The group's members and how many partitions each was assigned. */
async function members(): Promise<{ state: string; assigned: number[] }> {
  const admin = h.kafka.admin();
  await admin.connect();
  try {
    const { groups } = await admin.describeGroups([h.config.kafka.groupId]);
    const assigned = groups[0].members.map((m) => {
      const a = AssignerProtocol.MemberAssignment.decode(m.memberAssignment);
      return Object.values(a?.assignment ?? {}).reduce((n, ps) => n + ps.length, 0);
    });
    return { state: groups[0].state, assigned };
  } finally {
    await admin.disconnect();
  }
}

it('SIGKILLed during its first pin on a new group, the next start still commits the start; nothing sent is lost', async () => {
  const { leads, jobs } = h.topics;
  await produce(leads, 0, 2); // history from before the group existed: not to be journaled
  await produce(jobs, 0, 2);

  // The first process is killed while its pin's own consumer (kafkajs setOffsets) is in the group.
  const first = ingest([leads, jobs]);
  await eventually(async () => (await members()).assigned.length > 0, 'the pin to join the group', 60_000, 20);
  await stop(first, 'SIGKILL');

  // Back at once; it runs once it alone holds all six partitions (the dead pin's member timed out).
  const second = ingest([leads, jobs]);
  await eventually(
    async () => {
      const m = await members();
      return m.state === 'Stable' && m.assigned.length === 1 && m.assigned[0] === 6;
    },
    'the second process to hold all six partitions',
    90_000,
    250,
  );
  const unpinned = (await partitionProgress(h.kafka, h.config.kafka.groupId, [leads, jobs]))
    .filter((p) => p.committed < 0n)
    .map((p) => `${p.topic}/${p.partition}`);

  // Stopped cleanly before its first batch; what is sent meanwhile must be journaled when it is back.
  await stop(second, 'SIGTERM');
  const sent = [...(await produce(leads, 2000, 5)), ...(await produce(jobs, 2000, 5))];
  ingest([leads, jobs]);
  await eventually(
    async () =>
      (await partitionProgress(h.kafka, h.config.kafka.groupId, [leads, jobs])).every((p) => p.committed >= 0n),
    'the third process to start',
    60_000,
    250,
  );
  sent.push(...(await produce(leads, 3000, 1)), ...(await produce(jobs, 3000, 1)));
  await eventually(async () => (await journaled(3000, 3003)) === 6, 'the records sent after', 90_000, 500);
  await new Promise((r) => setTimeout(r, 1500)); // anything still on its way lands now

  const { rows } = await h.pool.query<{ at: string }>(
    `SELECT topic || '/' || kafka_partition || '/' || kafka_offset AS at FROM event_journal ORDER BY 1`,
  );
  const at = (c: Coordinates) => `${c.topic}/${c.partition}/${c.offset}`;
  expect({ unpinned, journaled: rows.map((r) => r.at).sort() }).toEqual({
    unpinned: [],
    journaled: sent.map(at).sort(),
  });
}, 240_000);

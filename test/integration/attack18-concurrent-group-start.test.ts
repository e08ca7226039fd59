import { startIngest, type IngestService } from '../../ingest/consumer';
import { createMetrics } from '../../shared/metrics';
import { partitionProgress, produceRecords, type Coordinates } from '../support/coordinates';
import type { LagMonitor } from '../../ingest/lag-monitor';
import { createSinkHarness, eventually, hangConsumer, startHarnessLagMonitor, type SinkHarness } from '../support/sink';

/**
 * attack18: two ingest processes of one group start together on a new group with KAFKA_FROM_BEGINNING=false (a
 * deployment rolled out with two replicas). Each pins the group's start (ingest/group-start.ts) through kafkajs's
 * admin setOffsets, which joins the group with a temporary consumer of its own and commits only the partitions that
 * consumer is assigned (kafkajs's OffsetManager.seek skips the others silently). Two temporary consumers in the group
 * at once split the partitions between them, so each commits only its share, and partitions end up with no committed
 * start while pinGroupStart reports them pinned. Those partitions are back to the attack17 state: their start lives
 * only in memory.
 * Invariant (docs/integrity.md section 1): once ingest started, the group's start is durable for every partition; so
 * records sent while both are down before their first batch are still journaled, exactly once, exactly once.
 */
let h: SinkHarness;
const extra: IngestService[] = [];

beforeEach(async () => {
  h = await createSinkHarness('concurrentpin', {
    KAFKA_FROM_BEGINNING: 'false',
    INGEST_STALL_SECONDS: '2',
    INGEST_LAG_INTERVAL_MS: '250',
  });
}, 60_000);
let monitor: LagMonitor | undefined;
afterEach(async () => {
  await monitor?.stop();
  monitor = undefined;
  for (const i of extra.splice(0)) await i.stop().catch(() => undefined);
  await h?.close();
});

/** A second ingest of the same group and config, as a second replica would run it. */
const startReplica = async () => {
  const ingest = await startIngest({
    kafka: h.kafka,
    pool: h.pool,
    metrics: createMetrics(h.config.metrics.tenantLabelLimit),
    log: h.log,
    config: h.config,
  });
  extra.push(ingest);
  return ingest;
};

/** Resolves once the group has a member: the first replica's pin, whose setOffsets joins it with a consumer of its own. */
async function groupHasMember(): Promise<void> {
  const admin = h.kafka.admin();
  await admin.connect();
  try {
    await eventually(
      async () => {
        const { groups } = await admin.describeGroups([h.config.kafka.groupId]);
        return groups[0]?.members.length > 0;
      },
      'a member in the group',
      20_000,
      20,
    );
  } finally {
    await admin.disconnect();
  }
}

/** The second replica starts while the first one's pin is under way (its temporary consumer is in the group). */
async function startStaggered(): Promise<IngestService> {
  const first = h.startIngest();
  await groupHasMember();
  const [, replica] = await Promise.all([first, startReplica()]);
  return replica;
}

/** `count` records of tenant acme on each partition of both topics, payload.seq from `from`; their coordinates. */
async function produceBoth(from: number, count: number): Promise<Coordinates[]> {
  const sent: Coordinates[] = [];
  for (const topic of [h.topics.leads, h.topics.jobs]) {
    const records = Array.from({ length: 3 * count }, (_, i) => ({
      partition: i % 3,
      key: Buffer.from(`k-${from + i}`),
      value: Buffer.from(JSON.stringify({ tenant_id: 'acme', seq: from + i })),
    }));
    sent.push(...(await produceRecords(h.upstream, topic, records)));
  }
  return sent;
}
/** Some history first (from before the group existed: not to be journaled), then two replicas, staggered, sharing all. */
async function twoReplicasOnHistory(): Promise<IngestService> {
  await produceBoth(0, 3);
  const replica = await startStaggered();
  await eventually(
    async () => h.ingest!.assignment().length + replica.assignment().length === 6,
    'the six partitions assigned between the two',
  );
  return replica;
}
const at = (c: Coordinates) => `${c.topic}/${c.partition}/${c.offset}`;

it("a replica starting while another pins a new group's start leaves no partition without a committed start", async () => {
  await twoReplicasOnHistory();
  const progress = await partitionProgress(h.kafka, h.config.kafka.groupId, h.config.kafka.topics);
  const unpinned = progress.filter((p) => p.committed < 0n).map((p) => `${p.topic}/${p.partition}`);
  expect(unpinned).toEqual([]);
});

it("journals what was sent while two replicas, one started during the other's pin, were down before their first batch", async () => {
  const replica = await twoReplicasOnHistory();
  await Promise.all([h.stopIngest(), replica.stop()]);
  extra.splice(0);

  const sent = await produceBoth(100, 5); // five on each of the six partitions
  await h.startIngest();
  await eventually(async () => h.ingest!.assignment().length === 6, 'all six partitions assigned');
  const after = await produceBoth(200, 1); // one on each partition, behind the five sent while it was down
  sent.push(...after);
  await eventually(
    async () => (await h.pool.query(`SELECT 1 FROM event_journal WHERE (payload->>'seq')::int >= 200`)).rowCount === 6,
    'the 6 records sent after the restart',
    30_000,
    500,
  );
  await new Promise((r) => setTimeout(r, 1500)); // anything still on its way lands now
  const { rows } = await h.pool.query<{ at: string }>(
    `SELECT topic || '/' || kafka_partition || '/' || kafka_offset AS at FROM event_journal ORDER BY 1`,
  );
  expect(rows.map((r) => r.at).sort()).toEqual(sent.map(at).sort());
});

it("sees replicas that stop fetching before their first batch as stalled, one started during the other's pin", async () => {
  const replica = await twoReplicasOnHistory();
  monitor = startHarnessLagMonitor(h);
  hangConsumer(h.ingest!);
  hangConsumer(replica);
  await produceBoth(100, 5); // five on each of the six partitions, none of them fetched

  // Every partition is behind by five and nothing moves: all six are reported stalled, /health fails.
  const stalled = await eventually(
    async () => {
      const s = monitor!.stalled();
      return s.length === 6 ? s : undefined;
    },
    'all six partitions reported stalled',
    20_000,
    250,
  ).catch(() => monitor!.stalled());
  expect(stalled.map((s) => `${s.topic}/${s.partition}:${s.lag}`).sort()).toEqual(
    [h.topics.jobs, h.topics.leads].flatMap((t) => [0, 1, 2].map((p) => `${t}/${p}:5`)),
  );
  await expect(monitor.check()).rejects.toThrow(/stalled/);
});

import type { Produced } from '../../bench/soak/check';
import { clusterMember } from '../../bench/support/cluster';
import { busiestPartition, ClusterRun, sendTenant, Traffic } from '../support/cluster-run';
import { eventually } from '../support/sink';

/**
 * Cluster fault suite, Kafka: the leader broker of the busiest partition is SIGKILLed while records stream in, and
 * while a range replay publishes. With replication factor 3 and min.insync.replicas 2 another in-sync replica takes
 * the partition over; afterwards the soak's checker (docs/integrity.md) finds every acknowledged record journaled
 * exactly once with its content, every replayed event journaled once, and no partition left behind.
 */
let c: ClusterRun;
/** A broker this file killed and has not brought back yet (afterAll starts it). */
let down: string | undefined;

beforeAll(async () => {
  c = await ClusterRun.open('kafka');
}, 41 * 60_000);

afterAll(async () => {
  if (down) await clusterMember('start', down).catch(() => undefined);
  await c?.close();
}, 300_000);

/** SIGKILLs the leader of the busiest partition of `produced`; returns the partition and the old leader. */
async function killLeader(produced: Omit<Produced, 'canonical'>[]) {
  const busy = busiestPartition(produced);
  const leader = (await c.leaders(busy.topic)).get(busy.partition);
  if (leader === undefined || leader < 0) throw new Error(`no leader for ${busy.topic}/${busy.partition}`);
  down = `kafka-${leader}`;
  await clusterMember('kill', down);
  const killedAt = Date.now();
  // Another in-sync replica leads the partition once the controller has fenced the dead broker.
  const successor = await eventually(
    async () => {
      const now = (await c.leaders(busy.topic)).get(busy.partition);
      return now !== undefined && now >= 0 && now !== leader ? now : undefined;
    },
    `a new leader for ${busy.topic}/${busy.partition}`,
    90_000,
    500,
  );
  return { ...busy, leader, successor, killedAt };
}

async function restartKilled(): Promise<void> {
  const name = down!;
  await clusterMember('start', name);
  down = undefined;
}

it(
  'SIGKILL of the busiest partition leader mid-ingest: every record journaled once, none stuck',
  async () => {
    const scope = await c.scope();
    const traffic = new Traffic(c.producer, { rate: 80, hostileShare: 0.1 });
    try {
      await traffic.reach(1000, 180_000);
      const killed = await killLeader(traffic.produced);
      // Records keep being acknowledged, on that very partition too, while its old leader is dead.
      await eventually(
        async () =>
          traffic.produced.filter(
            (p) => p.ackedAt! > killed.killedAt && p.topic === killed.topic && p.partition === killed.partition,
          ).length >= 50,
        `records acknowledged on ${killed.topic}/${killed.partition} by its new leader`,
        180_000,
        500,
      );
      await traffic.reach(traffic.produced.length + 500, 180_000);
      await restartKilled();
      await traffic.reach(traffic.produced.length + 500, 180_000);
    } finally {
      await traffic.stop();
    }
    const verdict = await c.check(traffic.produced, [], scope);
    process.stderr.write(`[cluster-faults] leader kill mid-ingest: ${JSON.stringify(verdict)}\n`);
    expect(verdict.violations).toEqual([]);
    expect(verdict.produced).toBeGreaterThanOrEqual(2000);
    expect(verdict.journaled + verdict.deadLettered).toBe(verdict.produced);
  },
  20 * 60_000,
);

it(
  'SIGKILL of the busiest partition leader mid-range-replay: the replay completes, each event journaled once',
  async () => {
    const scope = await c.scope();
    const tenant = c.tenant('replay-kill');
    const seeded = await sendTenant(c.producer, tenant, 1500);
    await c.journaled(tenant, scope, seeded.length);
    await c.drained();
    const ids = await c.originals(tenant, scope);
    const traffic = new Traffic(c.producer, { rate: 30, hostileShare: 0.1 });
    let workflowId = '';
    try {
      // 60 events/s: about 25 s of publishing, so the kill lands in the middle.
      workflowId = await c.startRange(tenant, 60);
      await c.replayPast(workflowId, 150);
      await killLeader(seeded);
      const atKill = await c.replayRows(workflowId);
      expect(atKill).toBeLessThan(ids.length);
      // The replay goes on with two brokers.
      await c.replayPast(workflowId, atKill + 100, 180_000);
      await restartKilled();
      const status = await c.finished(workflowId);
      expect(status.workflow_status).toBe('COMPLETED');
      expect(status.result).toMatchObject({ matched: ids.length, failed: 0 });
    } finally {
      await traffic.stop();
    }
    const verdict = await c.check([...seeded, ...traffic.produced], [{ workflowId, eventIds: ids }], scope);
    process.stderr.write(`[cluster-faults] leader kill mid-range-replay: ${JSON.stringify(verdict)}\n`);
    expect(verdict.violations).toEqual([]);
    expect(verdict.replayRows).toBe(ids.length);
  },
  20 * 60_000,
);

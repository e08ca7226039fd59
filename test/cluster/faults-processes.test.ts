import type { CompletedReplay } from '../../bench/soak/check';
import { counterTotals } from '../../bench/soak/check';
import { clusterMember, clusterMembers } from '../../bench/support/cluster';
import { ClusterRun, sendTenant, Traffic } from '../support/cluster-run';
import { eventually } from '../support/sink';

/**
 * Cluster fault suite, the service's own processes: a rolling restart of every ingest, worker and API process while
 * records stream in and replays run (started through whichever API process answers), and ingest scaled from two
 * processes to three during traffic. Afterwards the soak's checker (docs/integrity.md) finds every record in exactly
 * one place, every replayed event journaled once per replay, and no partition left behind.
 */
let c: ClusterRun;

beforeAll(async () => {
  c = await ClusterRun.open('processes');
}, 41 * 60_000);

afterAll(async () => {
  await clusterMember('stop', 'ingest-3').catch(() => undefined);
  await c?.close();
}, 300_000);

it(
  'rolling restart of ingest, worker and API processes under traffic and replays: nothing lost, nothing twice',
  async () => {
    const scope = await c.scope();
    const tenant = c.tenant('rolling');
    const seeded = await sendTenant(c.producer, tenant, 1200);
    await c.journaled(tenant, scope, seeded.length);
    await c.drained();
    const ids = await c.originals(tenant, scope);
    const traffic = new Traffic(c.producer, { rate: 40, hostileShare: 0.1 });
    const batches: Array<{ workflowId: string; eventIds: number[]; status: number }> = [];
    let rolling = true;
    let rangeId = '';
    try {
      // 5 events/s: the range runs through the restarts (each up to a minute: a graceful stop, then a start).
      rangeId = await c.startRange(tenant, 5);
      // A batch replay of five events every 10 s (the replay budget is 10 requests a minute for all API processes).
      const operator = (async () => {
        for (let i = 0; rolling; i++) {
          const eventIds = ids.slice((i * 37) % (ids.length - 5)).slice(0, 5);
          const answer = await c.api.call<{ workflow_id: string }>('POST', '/replay/batch', { ids: eventIds });
          batches.push({ workflowId: answer.body.workflow_id, eventIds, status: answer.status });
          await new Promise((r) => setTimeout(r, 10_000));
        }
      })();
      for (const member of ['ingest-1', 'ingest-2', 'worker-1', 'worker-2', 'api-1', 'api-2']) {
        await c.replayPast(rangeId, 0); // the range is under way before the first restart
        await clusterMember('restart', member);
      }
      rolling = false;
      await operator;
      const range = await c.finished(rangeId);
      expect(range.workflow_status).toBe('COMPLETED');
      expect(range.result).toMatchObject({ matched: ids.length, failed: 0 });
      for (const b of batches) {
        expect(b.status).toBe(202);
        expect((await c.finished(b.workflowId)).workflow_status).toBe('COMPLETED');
      }
    } finally {
      rolling = false;
      await traffic.stop();
    }
    expect(batches.length).toBeGreaterThanOrEqual(3);
    const completed: CompletedReplay[] = [{ workflowId: rangeId, eventIds: ids }, ...batches];
    const verdict = await c.check([...seeded, ...traffic.produced], completed, scope);
    process.stderr.write(`[cluster-faults] rolling restart: ${JSON.stringify(verdict)} batches ${batches.length}\n`);
    expect(verdict.violations).toEqual([]);
    expect(verdict.replayRows).toBe(ids.length + batches.length * 5);
  },
  25 * 60_000,
);

it(
  'ingest scaled from two processes to three during traffic: the third takes partitions, nothing lost or twice',
  async () => {
    const scope = await c.scope();
    const traffic = new Traffic(c.producer, { rate: 60, hostileShare: 0.1 });
    try {
      await traffic.reach(600, 180_000);
      expect((await c.groupMembers()).members).toHaveLength(2);
      await clusterMember('start', 'ingest-3');
      const group = await eventually(
        async () => {
          const g = await c.groupMembers();
          return g.state === 'Stable' && g.members.length === 3 ? g : undefined;
        },
        'three members in the ingest group',
        120_000,
        1000,
      );
      expect(group.members).toContain('crm-events-sink-ingest-3');
      // The third process journals records of the partitions it was given.
      const metrics = `http://${clusterMembers().get('ingest-3')!.address}/metrics`;
      await eventually(
        async () => (counterTotals(await (await fetch(metrics)).text())?.journaled ?? 0) > 0,
        'ingest-3 journaling records',
        120_000,
        1000,
      );
      await traffic.reach(traffic.produced.length + 1200, 180_000);
    } finally {
      await traffic.stop();
    }
    const verdict = await c.check(traffic.produced, [], scope);
    process.stderr.write(`[cluster-faults] scale ingest 2 -> 3: ${JSON.stringify(verdict)}\n`);
    expect(verdict.violations).toEqual([]);
    expect(verdict.journaled + verdict.deadLettered).toBe(verdict.produced);
  },
  20 * 60_000,
);

import { Client, Connection } from '@temporalio/client';
import type { Admin, Kafka, Producer } from 'kafkajs';
import pg from 'pg';
import { stuckPartitions, type CompletedReplay, type Produced } from '../../bench/soak/check';
import type { CollectScope } from '../../bench/soak/collect';
import { SOAK_TOPICS, seededRandom, type OutRecord } from '../../bench/soak/records';
import { TrafficSource, type ReplayStatus } from '../../bench/soak/traffic';
import { makeEvent } from '../../cli/traffic';
import { DEFAULTS } from '../../shared/config';
import { createKafka } from '../../shared/kafka';
import { createLogger } from '../../shared/logger';
import { clusterAddresses, clusterMembers, clusterStack } from '../../bench/support/cluster';
import { ClusterApi } from './cluster-api';
import { checkIntegrity, drain, type IntegrityVerdict } from './cluster-check';
import { uniqueSuffix } from './env';
import { eventually } from './sink';

/** The cluster's ingest processes run with the default group and topics (scripts/cluster/apps.sh). */
export const GROUP = DEFAULTS.KAFKA_GROUP_ID;
export const TOPICS = SOAK_TOPICS;

/** Realistic events (cli/traffic.ts) of one tenant, plus `extra` fields; keyed by tenant and sequence number. */
export function tenantRecords(tenant: string, extra: Record<string, unknown> = {}) {
  return (seq: number): OutRecord => {
    const event = makeEvent(seq, 1);
    const value = { ...(JSON.parse(event.value) as Record<string, unknown>), tenant_id: tenant, ...extra };
    return {
      kind: 'steady',
      topic: event.topic,
      key: Buffer.from(`${tenant}:${seq}`),
      value: Buffer.from(JSON.stringify(value)),
    };
  };
}

/** The soak's traffic source run in the background until stopped: one record per send, acks from all in-sync replicas. */
export class Traffic {
  readonly source: TrafficSource;
  private stopped = false;
  private readonly running: Promise<void>;

  constructor(producer: Producer, opts: { rate: number; hostileShare: number; records?: (seq: number) => OutRecord }) {
    this.source = new TrafficSource(
      producer,
      seededRandom(Date.now() % 2 ** 31),
      opts.hostileShare,
      () => undefined,
      opts.records,
    );
    this.running = this.source.run(opts.rate, () => this.stopped);
  }

  get produced(): Omit<Produced, 'canonical'>[] {
    return this.source.produced;
  }

  /** Resolves once `n` records are acknowledged (bounded by ms). */
  async reach(n: number, ms: number): Promise<void> {
    await eventually(async () => this.source.produced.length >= n, `${n} records acknowledged`, ms, 200);
  }

  /** Stops sending and waits for the sends in flight. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
  }
}

/** Sends `count` events of one tenant as fast as the brokers take them (at least count; sends in flight finish). */
export async function sendTenant(producer: Producer, tenant: string, count: number, extra = {}, ms = 240_000) {
  const traffic = new Traffic(producer, { rate: 500, hostileShare: 0, records: tenantRecords(tenant, extra) });
  try {
    await eventually(
      async () => traffic.source.produced.length + traffic.source.uncertain >= count,
      `${count} events of ${tenant} sent`,
      ms,
      200,
    );
  } finally {
    await traffic.stop();
  }
  return traffic.produced;
}

/**
 * One scenario's view of the cluster profile: the clients the suite needs (Postgres, Kafka, the two APIs), the
 * journal's state before the scenario, and the checks after it.
 */
export class ClusterRun {
  readonly run = uniqueSuffix();
  private constructor(
    readonly addresses: ReturnType<typeof clusterAddresses>,
    readonly pool: pg.Pool,
    readonly kafka: Kafka,
    readonly admin: Admin,
    readonly producer: Producer,
    readonly api: ClusterApi,
  ) {}

  /** Brings the cluster profile up (cold: builds the Temporal server once) and connects. */
  static async open(label: string): Promise<ClusterRun> {
    clusterStack('up', 40 * 60_000);
    const addresses = clusterAddresses(clusterMembers());
    const pool = new pg.Pool({ connectionString: addresses.databaseUrl, max: 3 });
    pool.on('error', () => undefined);
    const kafka = createKafka(addresses.brokers, `cluster-faults-${label}`, createLogger('silent'));
    const admin = kafka.admin();
    await admin.connect();
    // Not the service's producer: the soak's (plain, a few retries), whose acknowledged coordinates are checked.
    const producer = kafka.producer({ allowAutoTopicCreation: false, retry: { retries: 5 } });
    await producer.connect();
    await endLeftoverReplays(addresses.temporal);
    return new ClusterRun(addresses, pool, kafka, admin, producer, new ClusterApi(addresses.apis));
  }

  async close(): Promise<void> {
    await this.producer.disconnect().catch(() => undefined);
    await this.admin.disconnect().catch(() => undefined);
    await this.pool.end().catch(() => undefined);
  }

  tenant(scenario: string): string {
    return `cf-${this.run}-${scenario}`;
  }

  /** The journal and DLQ before a scenario: what the checker may skip. */
  async scope(): Promise<CollectScope> {
    const { rows } = await this.pool.query<{ j: string; d: string }>(
      `SELECT (SELECT coalesce(max(id), 0) FROM event_journal) AS j, (SELECT coalesce(max(id), 0) FROM event_dlq) AS d`,
    );
    return { afterJournalId: Number(rows[0].j), afterDlqId: Number(rows[0].d) };
  }

  /** Ids of a tenant's original events journaled after `scope`, in order. */
  async originals(tenant: string, scope: CollectScope): Promise<number[]> {
    const { rows } = await this.pool.query<{ id: string }>(
      'SELECT id FROM event_journal WHERE tenant_id = $1 AND replay_count = 0 AND id > $2 ORDER BY id',
      [tenant, scope.afterJournalId],
    );
    return rows.map((r) => Number(r.id));
  }

  /** Waits until `count` originals of a tenant are journaled. */
  async journaled(tenant: string, scope: CollectScope, count: number, ms = 180_000): Promise<number[]> {
    return eventually(
      async () => {
        const ids = await this.originals(tenant, scope);
        return ids.length >= count ? ids : undefined;
      },
      `${count} events of ${tenant} journaled`,
      ms,
      500,
    );
  }

  /** Waits until the ingest group has consumed every partition to its end (throws naming those left behind). */
  async drained(ms = 240_000): Promise<void> {
    const { offsets } = await drain(this.admin, GROUP, TOPICS, ms);
    const stuck = stuckPartitions(offsets);
    if (offsets.length === 0 || stuck.length > 0) throw new Error(`not drained: ${JSON.stringify(stuck)}`);
  }

  /** Journal rows of one replay (its copies as ingest journaled them). */
  async replayRows(workflowId: string): Promise<number> {
    const { rows } = await this.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM event_journal WHERE replay_count > 0 AND payload->>'_replay_id' = $1`,
      [workflowId],
    );
    return rows[0].n;
  }

  /** Waits until a replay has journaled more than `n` copies: it is under way. */
  async replayPast(workflowId: string, n: number, ms = 180_000): Promise<number> {
    return eventually(
      async () => {
        const rows = await this.replayRows(workflowId);
        return rows > n ? rows : undefined;
      },
      `${workflowId} past ${n} journaled copies`,
      ms,
      200,
    );
  }

  /** POST /replay/range over one tenant's events (every time), paced; returns the workflow id. */
  async startRange(tenant: string, eventsPerSecond: number): Promise<string> {
    const answer = await this.api.call<{ workflow_id: string }>('POST', '/replay/range', {
      start: '2020-01-01T00:00:00Z',
      end: new Date(Date.now() + 60_000).toISOString(),
      tenant_id: tenant,
      max_events_per_second: eventsPerSecond,
    });
    if (answer.status !== 202)
      throw new Error(`POST /replay/range answered ${answer.status}: ${JSON.stringify(answer.body)}`);
    return answer.body.workflow_id;
  }

  /** GET /replays/:id until the workflow is no longer running (bounded); its final status. */
  async finished(workflowId: string, ms = 600_000): Promise<ReplayStatus> {
    return eventually(
      async () => {
        const answer = await this.api.call<ReplayStatus>('GET', `/replays/${encodeURIComponent(workflowId)}`);
        const status = answer.body.workflow_status;
        return answer.status === 200 && status !== undefined && status !== 'RUNNING' ? answer.body : undefined;
      },
      `${workflowId} to finish`,
      ms,
      1000,
    );
  }

  /** Partition leaders of a topic, by partition. */
  async leaders(topic: string): Promise<Map<number, number>> {
    const [meta] = (await this.admin.fetchTopicMetadata({ topics: [topic] })).topics;
    return new Map(meta.partitions.map((p) => [p.partitionId, p.leader]));
  }

  /** The members of the ingest group and how many partitions each was assigned. */
  async groupMembers(): Promise<{ state: string; members: string[] }> {
    const [group] = (await this.admin.describeGroups([GROUP])).groups;
    return { state: group.state, members: group.members.map((m) => m.clientId) };
  }

  /** The soak's checker on everything since `scope`, with the ingest processes alive now. */
  async check(
    produced: Omit<Produced, 'canonical'>[],
    completed: CompletedReplay[],
    scope: CollectScope,
  ): Promise<IntegrityVerdict> {
    const ingest = [...clusterMembers().values()].filter((m) => m.name.startsWith('ingest-') && m.up);
    return checkIntegrity({
      databaseUrl: this.addresses.databaseUrl,
      admin: this.admin,
      groupId: GROUP,
      topics: TOPICS,
      produced,
      completed,
      scope,
      ingestMetrics: ingest.map((m) => `http://${m.address}/metrics`),
      drainMs: 240_000,
    });
  }
}

/** The busiest partition of what was produced (most records), on `topic` if given. */
export function busiestPartition(produced: Omit<Produced, 'canonical'>[], topic?: string) {
  const counts = new Map<string, { topic: string; partition: number; records: number }>();
  for (const p of produced) {
    if (topic && p.topic !== topic) continue;
    const k = `${p.topic}/${p.partition}`;
    const c = counts.get(k) ?? { topic: p.topic, partition: p.partition, records: 0 };
    c.records++;
    counts.set(k, c);
  }
  const sorted = [...counts.values()].sort((a, b) => b.records - a.records);
  if (!sorted[0]) throw new Error('nothing produced yet');
  return sorted[0];
}

/**
 * Terminates replays an earlier, interrupted run of the suite left running: the cluster keeps its Temporal state
 * across `stack.sh down`/`up`, so such a replay resumes when the cluster does and its rows would land in the next
 * scenario's scope (counted there as replay rows no scenario started).
 */
async function endLeftoverReplays(address: string): Promise<void> {
  const connection = await Connection.connect({ address });
  try {
    const client = new Client({ connection });
    const types = ['replayEventWorkflow', 'batchReplayWorkflow', 'rangeReplayWorkflow'];
    const query = `ExecutionStatus='Running' AND (${types.map((t) => `WorkflowType='${t}'`).join(' OR ')})`;
    for await (const wf of client.workflow.list({ query })) {
      await client.workflow
        .getHandle(wf.workflowId, wf.runId)
        .terminate('left running by an earlier cluster suite run')
        .catch(() => undefined);
    }
  } finally {
    await connection.close();
  }
}

import { Connection } from '@temporalio/client';
import { AssignerProtocol, type Kafka } from 'kafkajs';
import pg from 'pg';
import { makeEvent } from '../../cli/traffic';
import { DEFAULTS } from '../../shared/config';
import { createKafka, createProducer, type ReplayProducer } from '../../shared/kafka';
import { createLogger } from '../../shared/logger';
import { clusterAddresses, clusterMembers, clusterStack, type ClusterMember } from '../../bench/support/cluster';
import { uniqueSuffix } from '../support/env';
import { eventually } from '../support/sink';

/**
 * A first smoke test of the cluster profile: three brokers, the real Temporal server on Postgres, two processes of
 * each kind, all started by `stack.sh up --profile cluster` (or already running). Events go in through all three
 * brokers, are journaled once by the two ingest processes, a range replay runs on the two workers, and every
 * partition is on three in-sync replicas.
 */
const TOPICS = DEFAULTS.KAFKA_TOPICS.split(',');
const TASK_QUEUE = DEFAULTS.TEMPORAL_TASK_QUEUE;
const EVENTS = 600;
// The cluster's ingest processes run with the default group id.
const GROUP = DEFAULTS.KAFKA_GROUP_ID;

const run = uniqueSuffix();
const tenant = `smoke-${run}`;
let members: Map<string, ClusterMember>;
let addresses: ReturnType<typeof clusterAddresses>;
let pool: pg.Pool;
let kafka: Kafka;
let producer: ReplayProducer;
let start: string;

beforeAll(async () => {
  // Cold, this builds the Temporal server from the Go module proxy (several minutes); warm, it finds everything up.
  clusterStack('up', 30 * 60_000);
  members = clusterMembers();
  addresses = clusterAddresses(members);
  pool = new pg.Pool({ connectionString: addresses.databaseUrl, max: 2 });
  kafka = createKafka(addresses.brokers, `cluster-smoke-${run}`, createLogger('silent'));
  producer = createProducer(kafka);
  await producer.connect();
  start = (await pool.query<{ now: Date }>('SELECT now()')).rows[0].now.toISOString();
}, 31 * 60_000);

afterAll(async () => {
  await producer?.disconnect();
  await pool?.end();
});

const api = (index: number, path: string, init: RequestInit = {}) =>
  fetch(`${addresses.apis[index]}${path}`, {
    ...init,
    headers: { 'content-type': 'application/json', 'x-requested-by': 'cluster-smoke', ...init.headers },
  });

/** The run's journal rows that are not replays: total, distinct seqs, distinct Kafka coordinates, partitions. */
async function tally() {
  const { rows } = await pool.query<{ total: number; seqs: number; coords: number; partitions: number }>(
    `SELECT count(*)::int AS total, count(DISTINCT payload->>'seq')::int AS seqs,
            count(DISTINCT (topic, kafka_partition, kafka_offset))::int AS coords,
            count(DISTINCT (topic, kafka_partition))::int AS partitions
       FROM event_journal WHERE tenant_id = $1 AND replay_count = 0`,
    [tenant],
  );
  return rows[0];
}

it('has every member up: postgres, three brokers, the Temporal server, two ingest, two workers, two APIs', () => {
  const expected = ['postgres', 'kafka-1', 'kafka-2', 'kafka-3', 'temporal-server'].concat(
    ['ingest', 'worker', 'api'].flatMap((kind) => [`${kind}-1`, `${kind}-2`]),
  );
  const down = expected.filter((name) => !members.get(name)?.up || members.get(name)?.pid === undefined);
  expect(down).toEqual([]);
});

it('spreads the topics over the three brokers: at least 6 partitions, 3 replicas all in sync, min.insync.replicas 2', async () => {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const { topics } = await admin.fetchTopicMetadata({ topics: TOPICS });
    const partitions = topics.flatMap((t) => t.partitions);
    for (const topic of topics) expect(topic.partitions.length).toBeGreaterThanOrEqual(6);
    expect(partitions.filter((p) => p.replicas.length !== 3 || p.isr.length !== 3)).toEqual([]);
    // Right after the brokers (re)started one of them may lead everything until the controller's next leader
    // rebalance (leader.imbalance.check.interval.seconds, 20 s here).
    await eventually(
      async () => {
        const leaders = (await admin.fetchTopicMetadata({ topics: TOPICS })).topics.flatMap((t) =>
          t.partitions.map((p) => p.leader),
        );
        return new Set(leaders).size === 3;
      },
      'partition leaders on all three brokers',
      90_000,
      1000,
    );
    const configs = await admin.describeConfigs({
      includeSynonyms: false,
      resources: TOPICS.map((name) => ({ type: 2 /* TOPIC */, name, configNames: ['min.insync.replicas'] })),
    });
    for (const resource of configs.resources) {
      expect(resource.configEntries).toEqual([expect.objectContaining({ configValue: '2' })]);
    }
  } finally {
    await admin.disconnect();
  }
});

it('journals events produced through all three brokers exactly once, with both ingest processes consuming', async () => {
  const events = Array.from({ length: EVENTS }, (_, seq) => {
    const event = makeEvent(seq, 1, TOPICS[seq % TOPICS.length]);
    const value = { ...(JSON.parse(event.value) as Record<string, unknown>), tenant_id: tenant };
    return { topic: event.topic, key: `${tenant}:${seq}`, value: JSON.stringify(value) };
  });
  await producer.sendBatch({
    acks: -1,
    topicMessages: TOPICS.map((topic) => ({
      topic,
      messages: events.filter((e) => e.topic === topic).map(({ key, value }) => ({ key, value })),
    })),
  });
  await eventually(async () => (await tally()).total >= EVENTS, `${EVENTS} events journaled`, 120_000, 500);
  await new Promise((resolve) => setTimeout(resolve, 3000)); // a duplicate, if any, would land now
  const counts = await tally();
  expect(counts).toEqual({ total: EVENTS, seqs: EVENTS, coords: EVENTS, partitions: expect.any(Number) });
  expect(counts.partitions).toBeGreaterThanOrEqual(12);

  // Two members in the group, each owning partitions, each of which holds journaled events of this run.
  const admin = kafka.admin();
  await admin.connect();
  try {
    const [group] = (await admin.describeGroups([GROUP])).groups;
    expect(group.state).toBe('Stable');
    const owned = group.members.map((m) => AssignerProtocol.MemberAssignment.decode(m.memberAssignment)!.assignment);
    expect(owned).toHaveLength(2);
    for (const assignment of owned) {
      const pairs = Object.entries(assignment).flatMap(([topic, ps]) => ps.map((p) => [topic, p] as const));
      const { rows } = await pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM event_journal
          WHERE tenant_id = $1 AND (topic, kafka_partition) IN (SELECT * FROM unnest($2::text[], $3::int[]))`,
        [tenant, pairs.map(([t]) => t), pairs.map(([, p]) => p)],
      );
      expect(rows[0].n).toBeGreaterThan(0);
    }
  } finally {
    await admin.disconnect();
  }
});

it('runs a range replay on the two workers against the Temporal server; each event is replayed once', async () => {
  // Both worker processes poll the one task queue (their SDK identity is pid@host).
  const connection = await Connection.connect({ address: addresses.temporal });
  try {
    for (const taskQueueType of [1 /* WORKFLOW */, 2 /* ACTIVITY */]) {
      const { pollers } = await connection.workflowService.describeTaskQueue({
        namespace: 'default',
        taskQueue: { name: TASK_QUEUE },
        taskQueueType,
      });
      const pids = new Set(pollers.map((p) => Number(p.identity?.split('@')[0])));
      for (const worker of ['worker-1', 'worker-2']) expect(pids).toContain(members.get(worker)!.pid);
    }
  } finally {
    await connection.close();
  }

  const end = new Date(Date.now() + 1000).toISOString();
  const started = await api(0, '/replay/range', {
    method: 'POST',
    body: JSON.stringify({ start, end, tenant_id: tenant }),
  });
  expect(started.status).toBe(202);
  const workflowId = ((await started.json()) as { workflow_id: string }).workflow_id;

  // Followed through the other API process: both serve the same workflows.
  const detail = await eventually(
    async () => {
      const res = await api(1, `/replays/${encodeURIComponent(workflowId)}`);
      const body = (await res.json()) as { workflow_status: string; result?: Record<string, unknown> };
      return body.workflow_status === 'RUNNING' ? undefined : body;
    },
    `range replay ${workflowId} to close`,
    180_000,
    1000,
  );
  expect(detail.workflow_status).toBe('COMPLETED');
  expect(detail.result).toMatchObject({ status: 'completed', matched: EVENTS, published: EVENTS, failed: 0 });

  const replayed = async () => {
    const { rows } = await pool.query<{ total: number; sources: number }>(
      `SELECT count(*)::int AS total, count(DISTINCT payload->>'_replayed_from_event_id')::int AS sources
         FROM event_journal WHERE payload->>'_replay_id' = $1`,
      [workflowId],
    );
    return rows[0];
  };
  await eventually(async () => (await replayed()).total >= EVENTS, `${EVENTS} replays journaled`, 120_000, 500);
  await new Promise((resolve) => setTimeout(resolve, 3000));
  expect(await replayed()).toEqual({ total: EVENTS, sources: EVENTS });
  expect((await tally()).total).toBe(EVENTS);
});

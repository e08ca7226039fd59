import { REJECT_REASONS } from '../../journal/kinds';
import {
  counterSum,
  partitionProgress,
  produceRecords,
  startIngestCapturingLog,
  waitForCatchUp,
  type CatchUp,
  type Coordinates,
  type OutgoingRecord,
} from '../support/coordinates';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';

/**
 * Regression tests for the ingest-side "Why" bullets of issue 10 (docs/integrity.md), each through the real Kafka and
 * the real consumer: what used to stop every partition, drop re-created topics' records as duplicates, or skip a
 * record carrying forged lineage.
 */

const PARTITIONS = [0, 1, 2];
const json = (value: unknown) => Buffer.from(JSON.stringify(value));
const event = (partition: number, fields: Record<string, unknown>, headers?: OutgoingRecord['headers']) => ({
  partition,
  key: null,
  value: json({ tenant_id: 'acme', ...fields }),
  headers,
});
const behindOf = (c: CatchUp) =>
  c.behind.map((b) => `${b.topic}/${b.partition}: committed ${b.committed} of ${b.high}`);

/** A private sink (database, topics, group) with its consumer running, for the tests of one describe block. */
function useSink(label: string): () => SinkHarness {
  let h: SinkHarness | undefined;
  beforeAll(async () => {
    h = await createSinkHarness(label);
    await startIngestCapturingLog(h);
  });
  afterAll(() => h?.close());
  return () => h!;
}

/** For each coordinate: the journal rows there whose payload equals the produced value as jsonb, and all rows there. */
async function journaledAsProduced(h: SinkHarness, items: { at: Coordinates; value: Buffer }[]) {
  const { rows } = await h.pool.query<{ same: number; total: number }>(
    `SELECT (SELECT count(*) FROM event_journal j WHERE j.topic = c.topic AND j.kafka_partition = c.p
                AND j.kafka_offset = c.o AND j.payload = c.val::jsonb)::int AS same,
            (SELECT count(*) FROM event_journal j WHERE j.topic = c.topic AND j.kafka_partition = c.p
                AND j.kafka_offset = c.o)::int AS total
       FROM unnest($1::text[], $2::int[], $3::bigint[], $4::text[]) WITH ORDINALITY AS c(topic, p, o, val, i)
      ORDER BY c.i`,
    [
      items.map((x) => x.at.topic),
      items.map((x) => x.at.partition),
      items.map((x) => x.at.offset),
      items.map((x) => x.value.toString()),
    ],
  );
  return rows;
}

/** Sends records to a topic and pairs each with its coordinates. */
async function produce(h: SinkHarness, topic: string, records: OutgoingRecord[], producer = h.upstream) {
  const coords = await produceRecords(producer, topic, records);
  return records.map((r, i) => ({ at: coords[i], value: r.value! }));
}

describe('a JSON \\u0000 escape without tenant, on every partition', () => {
  const sink = useSink('nul-escape');

  it('is dead-lettered with a reason, the 50 good records after it are journaled, and every partition advances', async () => {
    const h = sink();
    const topics = [h.topics.leads, h.topics.jobs];
    const bad: Coordinates[] = [];
    const good: { at: Coordinates; value: Buffer }[] = [];
    for (const topic of topics) {
      for (const partition of PARTITIONS) {
        const records = [
          { partition, key: null, value: Buffer.from('{"note":"a\\u0000b"}') },
          ...Array.from({ length: 50 }, (_, n) => event(partition, { name: `after NUL ${n}` })),
        ];
        const sent = await produce(h, topic, records);
        bad.push(sent[0].at);
        good.push(...sent.slice(1));
      }
    }
    const catchUp = await waitForCatchUp(h.kafka, h.config.kafka.groupId, topics, {
      timeoutMs: 45_000,
      stallMs: 15_000,
    });
    expect(behindOf(catchUp)).toEqual([]);

    const { rows: dead } = await h.pool.query<{ reason: string; error: string }>(
      `SELECT d.reason, d.error FROM unnest($1::text[], $2::int[], $3::bigint[]) AS c(topic, p, o)
         JOIN event_dlq d ON d.topic = c.topic AND d.kafka_partition = c.p AND d.kafka_offset = c.o`,
      [bad.map((c) => c.topic), bad.map((c) => c.partition), bad.map((c) => c.offset)],
    );
    expect(dead).toHaveLength(bad.length);
    for (const row of dead) {
      expect(REJECT_REASONS).toContain(row.reason);
      expect(row.error.length).toBeGreaterThan(10);
    }
    const journaled = await journaledAsProduced(h, good);
    expect(journaled.filter((r) => r.same === 1 && r.total === 1)).toHaveLength(good.length);
  });
});

// Found by the hostile-record generator (HOSTILE_SEED=1360257642): kafkajs gathers a record's headers into a plain
// object, so a header named like an Object.prototype member arrives as [that member, value]. One consumer per name:
// a consumer that one of them crashes cannot speak for the next.
describe.each(['toString', 'constructor', '__proto__', 'hasOwnProperty'])('a header named %s', (name) => {
  const sink = useSink('proto-header');

  it('does not stop its partition: the record and the one after it are journaled', async () => {
    const h = sink();
    const topic = h.topics.jobs;
    const sent = await produce(h, topic, [
      event(1, { header: name }, { [name]: Buffer.from('x'), 'x-source': 'gateway' }),
      event(1, { after: name }),
    ]);
    const catchUp = await waitForCatchUp(h.kafka, h.config.kafka.groupId, [topic], {
      timeoutMs: 20_000,
      stallMs: 10_000,
    });
    expect(behindOf(catchUp)).toEqual([]);
    expect((await journaledAsProduced(h, sent)).map((r) => [r.same, r.total])).toEqual([
      [1, 1],
      [1, 1],
    ]);
  });
});

describe('coordinates used again after the topic is deleted and re-created', () => {
  const sink = useSink('coordinate-reuse');

  const hundredEach = (phase: string) =>
    PARTITIONS.flatMap((partition) => Array.from({ length: 100 }, (_, n) => event(partition, { phase, n, partition })));

  it('journals all 600 records (none dropped as a duplicate) and counts 300 coordinate reuses', async () => {
    const h = sink();
    const topic = h.topics.leads;
    const before = await produce(h, topic, hundredEach('before'));
    const first = await waitForCatchUp(h.kafka, h.config.kafka.groupId, [topic], {
      timeoutMs: 30_000,
      stallMs: 15_000,
    });
    expect(behindOf(first)).toEqual([]);
    expect((await journaledAsProduced(h, before)).every((r) => r.same === 1)).toBe(true);
    await h.stopIngest();

    await recreateTopic(h, topic);
    // a fresh upstream producer: the old one's sequence numbers belong to the old topic
    const producer = h.kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    const after = await produce(h, topic, hundredEach('after'), producer).finally(() => producer.disconnect());
    expect(after.filter((x) => x.at.offset === '0')).toHaveLength(PARTITIONS.length); // offsets restarted at 0

    await startIngestCapturingLog(h);
    // The consumer has caught up when the re-created partitions' committed offsets reach 100 again.
    await eventually(async () => {
      const progress = await partitionProgress(h.kafka, h.config.kafka.groupId, [topic]);
      return progress.every((p) => p.high === 100n && p.committed === 100n);
    }, 'the re-created topic to be consumed').catch(() => undefined);

    const { rows } = await h.pool.query<{ phase: string; rows: number; distinct: number }>(
      `SELECT payload->>'phase' AS phase, count(*)::int AS rows,
              count(DISTINCT (payload->>'partition', payload->>'n'))::int AS distinct
         FROM event_journal WHERE topic = $1 GROUP BY 1 ORDER BY 1`,
      [topic],
    );
    expect(rows).toEqual([
      { phase: 'after', rows: 300, distinct: 300 },
      { phase: 'before', rows: 300, distinct: 300 },
    ]);
    expect((await journaledAsProduced(h, after)).map((r) => r.same)).toEqual(after.map(() => 1));
    expect(await counterSum(h, 'crm_events_coordinate_reuse_total', { topic })).toBe(300);
  });
});

/** Deletes a topic and creates it again with the same name and partitions, waiting until each step took effect. */
async function recreateTopic(h: SinkHarness, topic: string): Promise<void> {
  const admin = h.kafka.admin();
  await admin.connect();
  try {
    await admin.deleteTopics({ topics: [topic], timeout: 10_000 });
    await eventually(async () => !(await admin.listTopics()).includes(topic), `${topic} to be deleted`);
    await eventually(
      () =>
        admin
          .createTopics({
            waitForLeaders: true,
            topics: [{ topic, numPartitions: PARTITIONS.length, replicationFactor: 1 }],
          })
          .then(() => true),
      `${topic} to be created again`,
    );
    await eventually(
      async () => (await admin.fetchTopicOffsets(topic)).length === PARTITIONS.length,
      `${topic}'s partitions to have leaders`,
    );
  } finally {
    await admin.disconnect();
  }
}

describe('a genuine redelivery and forged lineage', () => {
  const sink = useSink('redelivery');

  it('a record consumed twice (group offsets reset) is journaled once and counted as redelivered', async () => {
    const h = sink();
    const topic = h.topics.jobs;
    const records = PARTITIONS.flatMap((partition) =>
      Array.from({ length: 20 }, (_, n) => event(partition, { redelivery: n, partition })),
    );
    const sent = await produce(h, topic, records);
    const opts = { timeoutMs: 30_000, stallMs: 15_000 };
    expect(behindOf(await waitForCatchUp(h.kafka, h.config.kafka.groupId, [topic], opts))).toEqual([]);
    const redeliveredBefore =
      (await counterSum(h, 'crm_events_record_outcomes_total', { topic, outcome: 'redelivered' })) ?? 0;
    await h.stopIngest();

    const admin = h.kafka.admin();
    await admin.connect();
    await admin
      .setOffsets({
        groupId: h.config.kafka.groupId,
        topic,
        partitions: PARTITIONS.map((partition) => ({ partition, offset: '0' })),
      })
      .finally(() => admin.disconnect());
    expect((await partitionProgress(h.kafka, h.config.kafka.groupId, [topic])).map((p) => p.committed)).toEqual(
      PARTITIONS.map(() => 0n),
    );

    await startIngestCapturingLog(h);
    expect(behindOf(await waitForCatchUp(h.kafka, h.config.kafka.groupId, [topic], opts))).toEqual([]);
    expect((await journaledAsProduced(h, sent)).map((r) => [r.same, r.total])).toEqual(sent.map(() => [1, 1]));
    const redelivered = await counterSum(h, 'crm_events_record_outcomes_total', { topic, outcome: 'redelivered' });
    expect(redelivered === undefined ? undefined : redelivered - redeliveredBefore).toBe(sent.length);
    expect(await counterSum(h, 'crm_events_coordinate_reuse_total', { topic })).toBe(0);
  });

  it('a record with forged _replay_id + _replayed_from_event_id colliding with a genuine replay is journaled as an original', async () => {
    const h = sink();
    const topic = h.topics.leads;
    const lineage = {
      _replay_id: 'rep-collide-1',
      _replayed_from_event_id: 1,
      _replay_count: 1,
      _replay_source: 'operator_api',
    };
    // The genuine replay, journaled earlier (replay_count 1: it is in the replay-once index).
    await h.pool.query(
      `INSERT INTO event_journal (tenant_id, topic, payload, replay_count, replay_source)
       VALUES ('acme', $1, $2::jsonb, 1, 'operator_api')`,
      [topic, JSON.stringify({ tenant_id: 'acme', name: 'genuine replay', ...lineage })],
    );
    const forgedHeaders = {
      'x-replay-id': 'rep-collide-1',
      'x-replayed-from-event-id': '1',
      'x-replay-proof': Buffer.alloc(32, 7),
    };
    const sent = await produce(h, topic, [
      event(0, { name: 'forged, no headers', ...lineage }),
      event(1, { name: 'forged, with x-replay headers and a bogus proof', ...lineage }, forgedHeaders),
    ]);
    const catchUp = await waitForCatchUp(h.kafka, h.config.kafka.groupId, [topic], {
      timeoutMs: 30_000,
      stallMs: 15_000,
    });
    expect(behindOf(catchUp)).toEqual([]);

    const { rows } = await h.pool.query(
      `SELECT c.i::int AS i, j.replay_count, j.replay_source, j.payload = c.val::jsonb AS same_payload
         FROM unnest($1::text[], $2::int[], $3::bigint[], $4::text[]) WITH ORDINALITY AS c(topic, p, o, val, i)
         LEFT JOIN event_journal j ON j.topic = c.topic AND j.kafka_partition = c.p AND j.kafka_offset = c.o
        ORDER BY c.i`,
      [
        sent.map((s) => s.at.topic),
        sent.map((s) => s.at.partition),
        sent.map((s) => s.at.offset),
        sent.map((s) => s.value.toString()),
      ],
    );
    expect(rows).toEqual([
      { i: 1, replay_count: 0, replay_source: null, same_payload: true },
      { i: 2, replay_count: 0, replay_source: null, same_payload: true },
    ]);
  });
});

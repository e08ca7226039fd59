import { appendBatch } from '../../journal/append';
import { toReplayMessage } from '../../journal/lineage';
import { parseRecord, type KafkaRecord, type ParsedRecord } from '../../journal/record';
import { ensurePartitions } from '../../lifecycle/partitions';
import { listJournalPartitions } from '../../repository/journal-partitions';
import { createPool, type Pool } from '../../shared/db';
import { createLogger } from '../../shared/logger';
import { createTestDatabase } from '../support/database';
import { baseConfig } from '../support/env';

// The journal partitioned by received_at (docs/lifecycle.md): no unique index spans partitions, so invariant 1 of
// docs/integrity.md (a record is journaled once) across partition boundaries rests on redelivery.ts serialising the
// writers of a Kafka partition (and of a replay's copies) and classifying under that lock. These tests attack it.

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let pool: Pool;
let other: Pool;
const key = Buffer.alloc(32, 9);
const options = { maxBytes: 1024 * 1024, lineageKey: key };

beforeAll(async () => {
  db = await createTestDatabase(baseConfig().databaseUrl, 'journal_partitions');
  pool = createPool(db.databaseUrl, 4, createLogger('silent'));
  other = createPool(db.databaseUrl, 4, createLogger('silent'));
});
afterAll(async () => {
  await pool?.end();
  await other?.end();
  await db?.drop();
});

const record = (topic: string, partition: number, offset: number, value: unknown, extra: Partial<KafkaRecord> = {}) =>
  parseRecord(
    {
      topic,
      partition,
      offset: String(offset),
      key: null,
      value: Buffer.from(JSON.stringify(value)),
      timestamp: '1764547199000',
      ...extra,
    },
    options,
  );

/** The partition after the one now() writes to. */
async function partitionAfterNow() {
  const partitions = (await listJournalPartitions(pool)).filter((p) => !p.isDefault);
  return partitions.find((p) => p.from !== null && p.from.getTime() > Date.now())!;
}

async function rows(where: string, values: unknown[]): Promise<Array<{ id: number; part: string }>> {
  const result = await pool.query<{ id: number; part: string }>(
    `SELECT id, tableoid::regclass::text AS part FROM event_journal WHERE ${where} ORDER BY id`,
    values,
  );
  return result.rows;
}

it('a fresh database has the journal partitioned by received_at, partitions ahead of now, and a default partition', async () => {
  const partitions = await listJournalPartitions(pool);
  expect(partitions.filter((p) => p.isDefault).map((p) => p.name)).toEqual(['event_journal_default']);
  const regular = partitions.filter((p) => !p.isDefault);
  // The conversion's partition [MINVALUE, T0), then whole months up to three months ahead.
  expect(regular[0].from).toBeNull();
  expect(regular.at(-1)!.to!.getTime()).toBeGreaterThan(Date.now() + 80 * 86_400_000);
  for (let i = 1; i < regular.length; i++) expect(regular[i].from).toEqual(regular[i - 1].to);
});

it('a record redelivered after its row landed in another partition (after midnight) is not journaled again', async () => {
  const topic = 'boundary.redelivery';
  const first = [record(topic, 0, 1, { tenant_id: 'acme', n: 1 }), record(topic, 0, 2, { tenant_id: 'acme', n: 2 })];
  expect((await appendBatch(pool, first)).outcomes).toEqual(['journaled', 'journaled']);
  // Move the rows into the next partition, as if they had been journaled just after the boundary…
  const next = await partitionAfterNow();
  await pool.query('UPDATE event_journal SET received_at = $2 WHERE topic = $1', [topic, next.from]);
  expect(new Set((await rows('topic = $1', [topic])).map((r) => r.part))).toEqual(new Set([next.name]));
  // …and deliver them again now, when now() falls in another partition than theirs.
  const again = [record(topic, 0, 1, { tenant_id: 'acme', n: 1 }), record(topic, 0, 2, { tenant_id: 'acme', n: 2 })];
  expect((await appendBatch(pool, again)).outcomes).toEqual(['redelivered', 'redelivered']);
  expect(await rows('topic = $1', [topic])).toHaveLength(2);
  // A different record at those coordinates (topic re-created) is still journaled, and reported as a reuse.
  const reused = await appendBatch(pool, [record(topic, 0, 1, { tenant_id: 'acme', n: 'other' })]);
  expect(reused.outcomes).toEqual(['journaled']);
  expect(reused.reused).toHaveLength(1);
});

it('two consumers writing the same batch at the same time (a rebalance overlap) journal each record once', async () => {
  const topic = 'boundary.race';
  for (let round = 0; round < 25; round++) {
    const batch = (): ParsedRecord[] =>
      Array.from({ length: 20 }, (_, i) => record(topic, round % 3, round * 100 + i, { tenant_id: 'acme', round, i }));
    const [a, b] = await Promise.all([appendBatch(pool, batch()), appendBatch(other, batch())]);
    // Each record has exactly one 'journaled' between the two writers; the other saw it as a redelivery.
    for (let i = 0; i < 20; i++) expect([a.outcomes[i], b.outcomes[i]].sort()).toEqual(['journaled', 'redelivered']);
  }
  const { rows: counts } = await pool.query<{ n: number; distinct: number }>(
    `SELECT count(*)::int AS n, count(DISTINCT (kafka_partition, kafka_offset))::int AS distinct
       FROM event_journal WHERE topic = $1`,
    [topic],
  );
  expect(counts[0]).toEqual({ n: 500, distinct: 500 });
});

it("a replay's copy of an event is journaled once, even when its copies arrive on two partitions at once", async () => {
  const topic = 'boundary.replays';
  const [source] = (await appendBatch(pool, [record(topic, 0, 1, { tenant_id: 'acme', lead: 7 })])).journaled;
  const message = toReplayMessage(
    {
      id: source.row.id,
      tenant_id: 'acme',
      topic,
      replay_count: 0,
      payload_text: '{"lead": 7, "tenant_id": "acme"}',
      kafka_key: null,
      kafka_key_bytes: null,
      kafka_headers: null,
      legacy: false,
    },
    { source: 'test', replayId: 'replay-once-test' },
    key,
  );
  const copy = (partition: number, offset: number) =>
    parseRecord(
      {
        topic,
        partition,
        offset: String(offset),
        key: null,
        value: Buffer.from(message.value),
        timestamp: '1764547200000',
        headers: message.headers,
      },
      options,
    );
  // An activity retry published the copy twice, and (no key) the two copies went to two partitions.
  const [a, b] = await Promise.all([appendBatch(pool, [copy(1, 10)]), appendBatch(other, [copy(2, 20)])]);
  expect([a.outcomes[0], b.outcomes[0]].sort()).toEqual(['journaled', 'redelivered']);
  // A third copy, after the first one's row moved to another partition, is not journaled either.
  const next = await partitionAfterNow();
  await pool.query("UPDATE event_journal SET received_at = $1 WHERE payload->>'_replay_id' = 'replay-once-test'", [
    next.from,
  ]);
  expect((await appendBatch(pool, [copy(0, 30)])).outcomes).toEqual(['redelivered']);
  expect(await rows("payload->>'_replay_id' = $1", ['replay-once-test'])).toHaveLength(1);
});

it('rows no partition covered wait in the default partition and are adopted when maintenance creates theirs', async () => {
  const partitions = await listJournalPartitions(pool);
  const beyond = new Date(
    partitions
      .filter((p) => !p.isDefault)
      .at(-1)!
      .to!.getTime() +
      40 * 86_400_000,
  );
  await pool.query(
    `INSERT INTO event_journal (tenant_id, topic, payload, received_at) VALUES ('acme', 'strays', '{"n": 1}', $1),
            ('acme', 'strays', '{"n": 2}', $1)`,
    [beyond],
  );
  expect((await rows("topic = 'strays'", [])).map((r) => r.part)).toEqual([
    'event_journal_default',
    'event_journal_default',
  ]);
  const created = await ensurePartitions(pool, 'month', 3, beyond);
  expect(created.reduce((sum, c) => sum + c.adopted, 0)).toBe(2);
  const after = await rows("topic = 'strays'", []);
  expect(after).toHaveLength(2);
  expect(after.every((r) => r.part !== 'event_journal_default')).toBe(true);
  // Running it again creates nothing and moves nothing.
  expect(await ensurePartitions(pool, 'month', 3, beyond)).toEqual([]);
});

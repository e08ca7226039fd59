import { startIngest } from '../../ingest/consumer';
import { prepareDatabase } from '../../lifecycle/prepare';
import { listJournalPartitions } from '../../repository/journal-partitions';
import { createPool, type Pool } from '../../shared/db';
import { createKafka, createProducer, ensureTopics } from '../../shared/kafka';
import { createLogger } from '../../shared/logger';
import { createMetrics } from '../../shared/metrics';
import { migrate } from '../../shared/migrate';
import type { ScratchDatabase } from '../../bench/support/database';
import { createTestDatabase } from '../support/database';
import { baseConfig, uniqueSuffix } from '../support/env';
import { eventually } from '../support/sink';

// Point 2 of the journal lifecycle (docs/lifecycle.md): an installation whose journal is still the single table of
// schema 001–008 upgrades to time partitions while ingest writes, and loses and changes nothing. 1,000,000 rows
// written as the previous schema wrote them; the conversion runs while records keep arriving.

const ROWS = 1_000_000;
const log = createLogger('silent');
const base = baseConfig();
let database: ScratchDatabase;
let databaseUrl: string;
let pool: Pool;

beforeAll(async () => {
  // The SQL migrations only: event_journal stays one table.
  database = await createTestDatabase(base.databaseUrl, 'conversion', (url) => migrate(url, log));
  databaseUrl = database.databaseUrl;
  pool = createPool(databaseUrl, 4, log);
}, 60_000);
afterAll(async () => {
  await pool?.end();
  await database?.drop(); // autovacuum is busy here after a 1M-row load: drop() lets it step aside
});

/** Count and an order-independent checksum of every column of the rows (row text, md5 per row, summed). */
async function fingerprint(where: string): Promise<{ n: number; sum: string }> {
  const { rows } = await pool.query<{ n: number; sum: string }>(
    `SELECT count(*)::int AS n, coalesce(sum(('x' || left(md5(j::text), 15))::bit(60)::bigint), 0)::text AS sum
       FROM event_journal j WHERE ${where}`,
  );
  return rows[0];
}

it('converts a 1M-row journal to time partitions while ingest writes, without losing, doubling or changing a row', async () => {
  expect(
    (await pool.query("SELECT relkind::text AS k FROM pg_class WHERE oid = 'event_journal'::regclass")).rows[0].k,
  ).toBe('r');
  // 1M rows as schema 007 writes them, over the last 90 days, with coordinates, hashes, keys and headers.
  // In chunks: each statement stays well within the pool's statement_timeout.
  for (let lo = 1; lo <= ROWS; lo += 100_000) {
    await pool.query(
      `INSERT INTO event_journal (tenant_id, topic, payload, received_at, kafka_partition, kafka_offset, kafka_key,
                                kafka_key_bytes, kafka_headers, kafka_timestamp, content_hash)
     SELECT 'tenant-' || (g % 50), 'legacy.leads.created',
            jsonb_build_object('tenant_id', 'tenant-' || (g % 50), 'lead_id', g, 'amount', 12345678901234567890.5,
                               'name', 'Lead ' || g),
            now() - make_interval(secs => (g % 7776000)), g % 3, g / 3, 'k' || g, convert_to('k' || g, 'UTF8'),
            '[["source", "Y3Jt"]]'::jsonb, now() - make_interval(secs => (g % 7776000)),
            sha256(convert_to('row ' || g, 'UTF8'))
       FROM generate_series(${lo}, ${lo + 99_999}) AS g`,
    );
  }
  const before = await fingerprint("topic = 'legacy.leads.created'");
  expect(before.n).toBe(ROWS);

  // Ingest runs on its own topics and keeps producing through the conversion.
  const suffix = uniqueSuffix();
  const topic = `test.${suffix}.conversion`;
  const config = baseConfig({ DATABASE_URL: databaseUrl, KAFKA_TOPICS: topic, KAFKA_GROUP_ID: `conversion-${suffix}` });
  const kafka = createKafka(config.kafka.brokers, 'conversion-test', log);
  await ensureTopics(kafka, [topic], 3);
  const producer = createProducer(kafka);
  await producer.connect();
  const ingestPool = createPool(databaseUrl, 4, log);
  const ingest = await startIngest({ kafka, pool: ingestPool, metrics: createMetrics(100), log, config });
  let produced = 0;
  let producing = true;
  const traffic = (async () => {
    while (producing) {
      const messages = Array.from({ length: 100 }, () => ({
        key: `k${produced % 17}`,
        value: JSON.stringify({ tenant_id: 'acme', seq: produced++ }),
      }));
      await producer.send({ topic, acks: -1, messages });
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
  try {
    await eventually(async () => (await fingerprint(`topic = '${topic}'`)).n > 500, 'ingest running before', 30_000);
    const during = produced;
    await prepareDatabase(databaseUrl, log);
    expect(produced).toBeGreaterThan(during); // records kept arriving while the conversion ran
    // Records produced after the switch are journaled too (into the converted table).
    const converted = produced;
    await eventually(async () => (await fingerprint(`topic = '${topic}'`)).n > converted + 200, 'ingest after', 60_000);
  } finally {
    producing = false;
    await traffic;
  }
  await eventually(
    async () => (await fingerprint(`topic = '${topic}'`)).n === produced,
    'all records journaled',
    60_000,
  );
  await ingest.stop();
  await producer.disconnect();
  await ingestPool.end();

  // Every produced record once (distinct coordinates = rows), the old rows exactly as they were.
  const { rows: dup } = await pool.query(
    `SELECT count(*)::int AS n, count(DISTINCT (kafka_partition, kafka_offset))::int AS d FROM event_journal
      WHERE topic = $1`,
    [topic],
  );
  expect(dup[0]).toEqual({ n: produced, d: produced });
  expect(await fingerprint("topic = 'legacy.leads.created'")).toEqual(before);
  // The table is partitioned; the old rows live in the partition the old table became, with their ids.
  expect(
    (await pool.query("SELECT relkind::text AS k FROM pg_class WHERE oid = 'event_journal'::regclass")).rows[0].k,
  ).toBe('p');
  const partitions = await listJournalPartitions(pool);
  const legacy = partitions.find((p) => p.name.startsWith('event_journal_before_'))!;
  const { rows: inLegacy } = await pool.query(
    `SELECT count(*)::int AS n FROM ${legacy.name} WHERE topic = 'legacy.leads.created'`,
  );
  expect(inLegacy[0].n).toBe(ROWS);
  // Ids keep coming from the same sequence, past every old id.
  const { rows: ids } = await pool.query(
    `SELECT (SELECT max(id) FROM event_journal WHERE topic = 'legacy.leads.created') AS old,
            (SELECT min(id) FROM event_journal WHERE topic = $1) AS new`,
    [topic],
  );
  expect(Number(ids[0].new)).toBeGreaterThan(Number(ids[0].old));
}, 600_000);

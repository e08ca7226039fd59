import fc from 'fast-check';
import {
  columnsOf,
  landings,
  produceRecords,
  startIngestCapturingLog,
  waitForCatchUp,
  type CapturedLog,
  type CatchUp,
  type Coordinates,
} from '../support/coordinates';
import { describeRecord, hostileRecord, type HostileRecord } from '../support/hostile-records';
import { createSinkHarness, type SinkHarness } from '../support/sink';

/**
 * Invariant 1 of docs/integrity.md under attack: thousands of generated hostile records (fast-check) go through the
 * real Kafka to the real consumer, and each must end as exactly one journal row or one DLQ row at its coordinates,
 * with every partition reaching its high watermark. HOSTILE_SEED=<n> replays a run; HOSTILE_RECORDS sets its size.
 */

const MAX_BYTES = 64 * 1024;
const PARTITIONS = 3;
const RECORDS = Number(process.env.HOSTILE_RECORDS ?? 2000);
const SEED = process.env.HOSTILE_SEED ? Number(process.env.HOSTILE_SEED) : Math.floor(Math.random() * 2 ** 31);
const REPRO = `reproduce with HOSTILE_SEED=${SEED} HOSTILE_RECORDS=${RECORDS}`;
/** Producer requests stay well below the broker's 1 MB batch limit. */
const REQUEST_BYTES = 512 * 1024;
const REQUEST_RECORDS = 250;

interface Produced {
  record: HostileRecord;
  at: Coordinates;
}

let h: SinkHarness;
let log: CapturedLog;
let produced: Produced[] = [];
let catchUp: CatchUp;

beforeAll(async () => {
  h = await createSinkHarness('hostile', { INGEST_MAX_EVENT_BYTES: String(MAX_BYTES) });
  ({ log } = await startIngestCapturingLog(h));
  const records = fc.sample(hostileRecord(MAX_BYTES, PARTITIONS), { numRuns: RECORDS, seed: SEED });
  produced = await produceInRequests(records);
  catchUp = await waitForCatchUp(h.kafka, h.config.kafka.groupId, topics(), { timeoutMs: 60_000, stallMs: 15_000 });
}, 150_000);
afterAll(() => h?.close());

const topics = () => [h.topics.leads, h.topics.jobs];

async function produceInRequests(records: HostileRecord[]): Promise<Produced[]> {
  const out: Produced[] = [];
  for (const topicIndex of [0, 1] as const) {
    const mine = records.filter((r) => r.topic === topicIndex);
    for (let i = 0; i < mine.length;) {
      const request: HostileRecord[] = [];
      let bytes = 0;
      for (; i < mine.length && request.length < REQUEST_RECORDS; i++) {
        const size = (mine[i].value?.length ?? 0) + (mine[i].key?.length ?? 0);
        if (request.length > 0 && bytes + size > REQUEST_BYTES) break;
        request.push(mine[i]);
        bytes += size;
      }
      const coords = await produceRecords(h.upstream, topics()[topicIndex], request);
      request.forEach((record, j) => out.push({ record, at: coords[j] }));
    }
  }
  return out;
}

const where = ({ topic, partition, offset }: Coordinates) =>
  `${topic === h.topics.leads ? 'leads' : 'jobs'}/${partition}@${offset}`;
const text = (value: Buffer | null): string | undefined => {
  if (value === null) return undefined;
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(value);
  } catch {
    return undefined;
  }
};

/** Coordinates as the four unnest() arrays the checks below join on, plus their order. */
const coordinateArrays = (items: Produced[]) => [
  items.map((p) => p.at.topic),
  items.map((p) => p.at.partition),
  items.map((p) => p.at.offset),
];

it(`produces at least 2,000 records and knows each one's coordinates (${REPRO})`, async () => {
  expect(produced.length).toBeGreaterThanOrEqual(2000);
  const perPartition = new Map<string, number>();
  for (const { at } of produced)
    perPartition.set(`${at.topic}/${at.partition}`, (perPartition.get(`${at.topic}/${at.partition}`) ?? 0) + 1);
  // Fresh topics: the high watermark of each partition is the number of records this run put there.
  const highs = Object.fromEntries(catchUp.progress.map((p) => [`${p.topic}/${p.partition}`, Number(p.high)]));
  expect(highs).toEqual(Object.fromEntries(Object.keys(highs).map((k) => [k, perPartition.get(k) ?? 0])));
  expect(catchUp.progress).toHaveLength(2 * PARTITIONS);
});

it(`invariant 1: every record ends in exactly one journal or DLQ row, and every partition reaches its high watermark (${REPRO})`, async () => {
  const landed = await landings(
    h.pool,
    produced.map((p) => p.at),
  );
  const byCoordinates = new Map(produced.map((p) => [where(p.at), p]));
  const problems: string[] = [];
  for (const b of catchUp.behind) {
    // The consumer fetched a batch from its committed offset on: the record that stops it is in there, often not
    // the first one; the consumer's log below says what Postgres refused.
    const first = b.committed < 0n ? 0n : b.committed;
    const culprit = byCoordinates.get(where({ topic: b.topic, partition: b.partition, offset: String(first) }));
    problems.push(
      `partition ${where({ ...b, offset: String(first) })}: committed ${b.committed} of high watermark ${b.high}, ` +
        `not moved for ${b.stillForMs} ms; first record not committed: ` +
        (culprit ? describeRecord(culprit.record) : '(not produced by this run)'),
    );
  }
  const wrong = produced.map((p, i) => ({ p, ...landed[i] })).filter((x) => x.journal + x.dlq !== 1);
  const notLanded = wrong.filter((x) => x.journal + x.dlq === 0);
  const many = wrong.filter((x) => x.journal + x.dlq > 1);
  if (notLanded.length) {
    problems.push(`${notLanded.length} records in neither table, e.g.:`);
    for (const x of notLanded.slice(0, 5)) problems.push(`  ${where(x.p.at)} ${describeRecord(x.p.record)}`);
  }
  if (many.length) {
    problems.push(`${many.length} records in more than one row, e.g.:`);
    for (const x of many.slice(0, 5))
      problems.push(`  ${where(x.p.at)} journal=${x.journal} dlq=${x.dlq} ${describeRecord(x.p.record)}`);
  }
  if (problems.length) {
    const said = log.summary();
    problems.unshift(REPRO);
    problems.push('the consumer logged:', ...said.map((line) => `  ${line}`));
  }
  expect(problems).toEqual([]);
});

it(`journaled records keep their payload: equal to the produced JSON as jsonb (${REPRO})`, async () => {
  const landed = await landings(
    h.pool,
    produced.map((p) => p.at),
  );
  const journaled = produced.filter((_, i) => landed[i].journal === 1);
  const problems: string[] = [];
  const comparable = journaled.filter((p) => {
    const t = text(p.record.value);
    if (t === undefined || t.includes('\u0000'))
      problems.push(`${where(p.at)} journaled a value that is not JSON text: ${describeRecord(p.record)}`);
    return t !== undefined && !t.includes('\u0000');
  });
  const differ = await payloadsThatDiffer('event_journal', comparable);
  for (const p of differ.slice(0, 10)) problems.push(`${where(p.at)} payload differs from ${describeRecord(p.record)}`);
  if (differ.length > 10) problems.push(`… ${differ.length} in all`);
  if (problems.length) problems.unshift(REPRO);
  expect(problems).toEqual([]);
  // The run must journal enough records for this check to mean something.
  expect(comparable.length).toBeGreaterThan(RECORDS / 10);
});

/**
 * The produced records whose row in `table` has a payload that is not the produced text as jsonb. One statement for
 * all; if it fails (a value Postgres would not cast, so it cannot be the stored payload), row by row.
 */
async function payloadsThatDiffer(table: 'event_journal' | 'event_dlq', items: Produced[]): Promise<Produced[]> {
  const sql = `SELECT c.i::int AS i FROM unnest($1::text[], $2::int[], $3::bigint[], $4::text[]) WITH ORDINALITY AS c(topic, p, o, val, i)
      JOIN ${table} t ON t.topic = c.topic AND t.kafka_partition = c.p AND t.kafka_offset = c.o
     WHERE t.payload IS DISTINCT FROM c.val::jsonb`;
  const values = items.map((p) => text(p.record.value)!);
  try {
    const { rows } = await h.pool.query<{ i: number }>(sql, [...coordinateArrays(items), values]);
    return rows.map((r) => items[r.i - 1]);
  } catch {
    const differ: Produced[] = [];
    for (const [i, p] of items.entries()) {
      const same = await h.pool
        .query(sql, [...coordinateArrays([p]), [values[i]]])
        .then((r) => r.rowCount === 0)
        .catch(() => false);
      if (!same) differ.push(p);
    }
    return differ;
  }
}

it(`DLQ rows keep the raw value: raw_value text (UTF-8 or base64:), payload jsonb, or raw_bytes (${REPRO})`, async () => {
  const landed = await landings(
    h.pool,
    produced.map((p) => p.at),
  );
  const dead = produced.filter((_, i) => landed[i].dlq === 1);
  // A row Postgres refused in text form is stored as bytes only (docs/integrity.md), so raw_bytes must exist.
  expect(await columnsOf(h.pool, 'event_dlq')).toEqual(expect.arrayContaining(['raw_bytes']));
  const { rows } = await h.pool.query<{
    i: number;
    raw_value: string | null;
    has_payload: boolean;
    raw_bytes: Buffer | null;
  }>(
    `SELECT c.i::int AS i, d.raw_value, d.payload IS NOT NULL AS has_payload, d.raw_bytes
       FROM unnest($1::text[], $2::int[], $3::bigint[]) WITH ORDINALITY AS c(topic, p, o, i)
       JOIN event_dlq d ON d.topic = c.topic AND d.kafka_partition = c.p AND d.kafka_offset = c.o`,
    coordinateArrays(dead),
  );
  const viaPayload: Produced[] = [];
  const problems: string[] = [];
  for (const row of rows) {
    const p = dead[row.i - 1];
    const value = p.record.value;
    if (value === null) {
      if (row.raw_value !== null || row.has_payload || row.raw_bytes !== null)
        problems.push(`${where(p.at)} a tombstone's DLQ row holds a value`);
      continue;
    }
    if (row.raw_bytes?.equals(value)) continue;
    if (
      row.raw_value !== null &&
      (row.raw_value === text(value) || row.raw_value === `base64:${value.toString('base64')}`)
    )
      continue;
    if (row.has_payload && text(value) !== undefined) viaPayload.push(p);
    else
      problems.push(
        `${where(p.at)} raw_value ${JSON.stringify(row.raw_value?.slice(0, 80))} is not ${describeRecord(p.record)}`,
      );
  }
  for (const p of await payloadsThatDiffer('event_dlq', viaPayload))
    problems.push(`${where(p.at)} DLQ payload differs from ${describeRecord(p.record)}`);
  if (problems.length) problems.unshift(REPRO);
  expect(problems.slice(0, 12)).toEqual([]);
  expect(dead.length).toBeGreaterThan(RECORDS / 10);
});

it(`raw value bytes and key bytes are stored byte-identical (migration 007: raw_bytes, kafka_key_bytes) (${REPRO})`, async () => {
  expect(await columnsOf(h.pool, 'event_dlq')).toEqual(expect.arrayContaining(['raw_bytes', 'kafka_key_bytes']));
  expect(await columnsOf(h.pool, 'event_journal')).toEqual(expect.arrayContaining(['kafka_key_bytes']));
  const landed = await landings(
    h.pool,
    produced.map((p) => p.at),
  );
  const stored = produced.filter((_, i) => landed[i].journal + landed[i].dlq === 1);
  const { rows } = await h.pool.query<{ i: number; tbl: string; value_same: boolean; key_same: boolean }>(
    `SELECT c.i::int AS i, 'event_dlq' AS tbl, d.raw_bytes IS NOT DISTINCT FROM c.val AS value_same,
            d.kafka_key_bytes IS NOT DISTINCT FROM c.k AS key_same
       FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bytea[], $5::bytea[]) WITH ORDINALITY AS c(topic, p, o, val, k, i)
       JOIN event_dlq d ON d.topic = c.topic AND d.kafka_partition = c.p AND d.kafka_offset = c.o
     UNION ALL
     SELECT c.i::int, 'event_journal', true, j.kafka_key_bytes IS NOT DISTINCT FROM c.k
       FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bytea[], $5::bytea[]) WITH ORDINALITY AS c(topic, p, o, val, k, i)
       JOIN event_journal j ON j.topic = c.topic AND j.kafka_partition = c.p AND j.kafka_offset = c.o`,
    [...coordinateArrays(stored), stored.map((p) => p.record.value), stored.map((p) => p.record.key)],
  );
  expect(rows).toHaveLength(stored.length);
  // Bytes compared on a stopped consumer's handful of rows would prove nothing.
  expect(stored.length).toBeGreaterThan(RECORDS / 2);
  const differ = rows.filter((r) => !r.value_same || !r.key_same);
  const problems = differ
    .slice(0, 10)
    .map(
      (r) =>
        `${where(stored[r.i - 1].at)} ${r.tbl}: ${r.value_same ? '' : 'value bytes differ; '}${r.key_same ? '' : 'key bytes differ; '}${describeRecord(stored[r.i - 1].record)}`,
    );
  if (differ.length) problems.unshift(REPRO, `${differ.length} of ${stored.length} stored records differ in bytes`);
  expect(problems).toEqual([]);
});

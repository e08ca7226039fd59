import pino from 'pino';
import type { IHeaders, Kafka, Producer } from 'kafkajs';
import { startIngest, type IngestService } from '../../ingest/consumer';
import type { Pool } from '../../shared/db';
import { createKafka } from '../../shared/kafka';
import type { SinkHarness } from './sink';

/** Where a produced record is, as the broker told the producer. Offsets are Kafka int64, kept as strings. */
export interface Coordinates {
  topic: string;
  partition: number;
  offset: string;
}

/** One record to produce, to an explicit partition, as bytes (null: no key, or a tombstone). */
export interface OutgoingRecord {
  partition: number;
  key: Buffer | null;
  value: Buffer | null;
  headers?: IHeaders;
  timestamp?: string;
}

/**
 * Produces records to one topic in one request and returns each record's coordinates, derived from the send result:
 * the records of one partition form one record batch, so they sit at baseOffset, baseOffset + 1, … in array order.
 */
export async function produceRecords(
  producer: Producer,
  topic: string,
  records: OutgoingRecord[],
): Promise<Coordinates[]> {
  const result = await producer.send({ topic, acks: -1, messages: records.map((r) => ({ ...r })) });
  const base = new Map(result.map((m) => [m.partition, BigInt(m.baseOffset ?? '-1')]));
  const used = new Map<number, bigint>();
  return records.map((r) => {
    const first = base.get(r.partition);
    if (first === undefined || first < 0n) throw new Error(`No base offset for ${topic}/${r.partition} in the result`);
    const index = used.get(r.partition) ?? 0n;
    used.set(r.partition, index + 1n);
    return { topic, partition: r.partition, offset: (first + index).toString() };
  });
}

/** A produced JSON record: where it landed and what it holds. */
export interface SentRecord {
  at: Coordinates;
  payload: Record<string, unknown>;
}

/**
 * Leads of tenant acme with payload.seq in [from, from + count) (plus `extra(seq)`), keyed lead-<seq> and spread over
 * three partitions by seq, produced in one request; returned with their coordinates.
 */
export async function produceSeqLeads(
  producer: Producer,
  topic: string,
  from: number,
  count: number,
  extra: (seq: number) => Record<string, unknown> = () => ({}),
): Promise<SentRecord[]> {
  const payloads = Array.from({ length: count }, (_, i) => ({ tenant_id: 'acme', seq: from + i, ...extra(from + i) }));
  const records: OutgoingRecord[] = payloads.map((p) => ({
    partition: p.seq % 3,
    key: Buffer.from(`lead-${p.seq}`),
    value: Buffer.from(JSON.stringify(p)),
  }));
  const coords = await produceRecords(producer, topic, records);
  return coords.map((at, i) => ({ at, payload: payloads[i] }));
}

/** Committed offset (-1: none yet), low and high watermark of one partition. */
export interface PartitionProgress {
  topic: string;
  partition: number;
  committed: bigint;
  low: bigint;
  high: bigint;
}

/** Whether the group still has records to consume there (with nothing committed, it starts at the low watermark). */
export const isBehind = (p: PartitionProgress) => p.high > (p.committed < 0n ? p.low : p.committed);

/** The group's committed offsets next to the high watermarks, for every partition of the topics. */
export async function partitionProgress(kafka: Kafka, groupId: string, topics: string[]): Promise<PartitionProgress[]> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const committed = await admin.fetchOffsets({ groupId, topics });
    const progress: PartitionProgress[] = [];
    for (const topic of topics) {
      const byPartition = new Map(
        (committed.find((c) => c.topic === topic)?.partitions ?? []).map((p) => [p.partition, BigInt(p.offset)]),
      );
      for (const { partition, low, high } of await admin.fetchTopicOffsets(topic)) {
        const committed = byPartition.get(partition) ?? -1n;
        progress.push({ topic, partition, committed, low: BigInt(low), high: BigInt(high) });
      }
    }
    return progress.sort((a, b) => a.topic.localeCompare(b.topic) || a.partition - b.partition);
  } finally {
    await admin.disconnect();
  }
}

export interface CatchUp {
  caughtUp: boolean;
  progress: PartitionProgress[];
  /** Partitions still behind their high watermark at the end, with how long their committed offset stood still. */
  behind: (PartitionProgress & { stillForMs: number })[];
}

/**
 * Waits until the group's committed offset reaches the high watermark on every partition of the topics. Never throws
 * on a timeout: it returns what it saw, so the caller can say which partition stopped where. It gives up early when
 * every partition that is behind has not moved for `stallMs` (a stopped partition does not start again by itself).
 */
export async function waitForCatchUp(
  kafka: Kafka,
  groupId: string,
  topics: string[],
  opts: { timeoutMs: number; stallMs: number },
): Promise<CatchUp> {
  const deadline = Date.now() + opts.timeoutMs;
  const lastMove = new Map<string, { committed: bigint; at: number }>();
  for (;;) {
    const progress = await partitionProgress(kafka, groupId, topics);
    const now = Date.now();
    const behind = progress.filter(isBehind).map((p) => {
      const id = `${p.topic}/${p.partition}`;
      const seen = lastMove.get(id);
      if (!seen || seen.committed !== p.committed) lastMove.set(id, { committed: p.committed, at: now });
      return { ...p, stillForMs: now - (lastMove.get(id)?.at ?? now) };
    });
    if (behind.length === 0) return { caughtUp: true, progress, behind };
    if (now >= deadline || behind.every((p) => p.stillForMs >= opts.stallMs)) {
      return { caughtUp: false, progress, behind };
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** How many journal rows and DLQ rows sit at each of the coordinates (same order as given). */
export async function landings(pool: Pool, coords: Coordinates[]): Promise<{ journal: number; dlq: number }[]> {
  const { rows } = await pool.query<{ i: string; journal: number; dlq: number }>(
    `SELECT c.i,
            (SELECT count(*) FROM event_journal j
              WHERE j.topic = c.topic AND j.kafka_partition = c.p AND j.kafka_offset = c.o)::int AS journal,
            (SELECT count(*) FROM event_dlq d
              WHERE d.topic = c.topic AND d.kafka_partition = c.p AND d.kafka_offset = c.o)::int AS dlq
       FROM unnest($1::text[], $2::int[], $3::bigint[]) WITH ORDINALITY AS c(topic, p, o, i)
      ORDER BY c.i`,
    [coords.map((c) => c.topic), coords.map((c) => c.partition), coords.map((c) => c.offset)],
  );
  return rows.map(({ journal, dlq }) => ({ journal, dlq }));
}

/** The columns a table has now (to assert that a migration landed, never to skip an assertion). */
export async function columnsOf(pool: Pool, table: string): Promise<string[]> {
  const { rows } = await pool.query<{ column_name: string }>(
    `SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1`,
    [table],
  );
  return rows.map((r) => r.column_name).sort();
}

/** Log lines (warn and above) of an ingest consumer, kept in memory so a failing test can say what it logged. */
export interface CapturedLog {
  lines: { level: string; msg: string; err?: string }[];
  /**
   * The distinct messages, most frequent first, each with its count: short enough for a failure message. Per-record
   * lines (dead letters, persisted events) are left out unless `except` says otherwise.
   */
  summary(limit?: number, except?: RegExp): string[];
}

/**
 * Starts the harness's real ingest consumer with a logger that keeps its warnings and errors (the harness's own
 * logger is silent), so that a stalled partition can be explained by what the consumer said.
 */
export async function startIngestCapturingLog(h: SinkHarness): Promise<{ ingest: IngestService; log: CapturedLog }> {
  const lines: CapturedLog['lines'] = [];
  const logger = pino(
    { level: 'warn', formatters: { level: (label) => ({ level: label }) } },
    {
      write: (line: string) => {
        const { level, msg, err, error, stack } = JSON.parse(line) as {
          level: string;
          msg: string;
          err?: unknown;
          error?: string;
          stack?: string;
        };
        lines.push({
          level,
          msg,
          err:
            typeof err === 'string'
              ? err
              : ((err as { message?: string })?.message ?? error ?? stack?.split('\n').slice(0, 2).join(' ')),
        });
      },
    },
  );
  // A Kafka client of its own, so that what kafkajs says (an error thrown by the batch handler) is kept too.
  const kafka = createKafka(h.config.kafka.brokers, `${h.config.kafka.clientId}-test`, logger);
  const ingest = await startIngest({ kafka, pool: h.pool, metrics: h.metrics, log: logger, config: h.config });
  h.ingest = ingest;
  const summary = (limit = 8, except = /Sent record to DLQ|Persisted/) => {
    const counts = new Map<string, number>();
    for (const l of lines) {
      if (except.test(l.msg)) continue;
      const text = `${l.level}: ${l.msg}${l.err ? ` — ${l.err}` : ''}`.slice(0, 600);
      counts.set(text, (counts.get(text) ?? 0) + 1);
    }
    return [...counts.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, limit)
      .map(([text, n]) => `${n}× ${text}`);
  };
  return { ingest, log: { lines, summary } };
}

/** Sum of a Prometheus counter's samples whose labels include all of `labels` (undefined: no such metric). */
export async function counterSum(
  h: Pick<SinkHarness, 'metrics'>,
  name: string,
  labels: Record<string, string> = {},
): Promise<number | undefined> {
  const metric = h.metrics.registry.getSingleMetric(name);
  if (!metric) return undefined;
  const { values } = await metric.get();
  return values
    .filter((v) => Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want))
    .reduce((sum, v) => sum + v.value, 0);
}

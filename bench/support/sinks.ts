import { createHash } from 'node:crypto';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Kafka } from 'kafkajs';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import type { TrafficEvent } from '../../cli/traffic';
import { sleep } from './env';

/** Throughput of one timed run: events handled between the first one seen and the last. */
export interface Run {
  events: number;
  seconds: number;
  eventsPerSecond: number;
  /** Set when the run was cut short by its cap (count or time). */
  capped?: string;
}

export const run = (events: number, ms: number, capped?: string): Run => ({
  events,
  seconds: Math.round(ms) / 1000,
  eventsPerSecond: Math.round((events / ms) * 1000),
  ...(capped ? { capped } : {}),
});

/**
 * The seeds' sink, as they describe it: eachMessage, one INSERT (its own transaction) and one offset commit per
 * message. Stops after `maxEvents` or `maxMs`, whichever comes first.
 */
export async function naiveSink(
  kafka: Kafka,
  databaseUrl: string,
  topics: string[],
  groupId: string,
  maxEvents: number,
  maxMs: number,
): Promise<Run> {
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  const consumer = kafka.consumer({ groupId });
  let count = 0;
  let first = 0;
  let last = 0;
  await consumer.connect();
  await consumer.subscribe({ topics, fromBeginning: true });
  const done = new Promise<void>((resolve) => {
    void consumer.run({
      autoCommit: false,
      eachMessage: async ({ topic, partition, message }) => {
        if (count >= maxEvents || (first && Date.now() - first >= maxMs)) return resolve();
        first ||= Date.now();
        const value = message.value!.toString();
        const event = JSON.parse(value) as { tenant_id: string };
        await db.query(
          'INSERT INTO event_journal (tenant_id, topic, payload, kafka_partition, kafka_offset, kafka_key) VALUES ($1, $2, $3, $4, $5, $6)',
          [event.tenant_id, topic, value, partition, message.offset, message.key?.toString() ?? null],
        );
        await consumer.commitOffsets([{ topic, partition, offset: (BigInt(message.offset) + 1n).toString() }]);
        count += 1;
        last = Date.now();
        if (count >= maxEvents || last - first >= maxMs) resolve();
      },
    });
  });
  await done;
  await consumer.disconnect();
  await db.end();
  const capped = count < maxEvents ? `time cap ${maxMs / 1000} s` : `first ${maxEvents} events`;
  return run(count, last - first, capped);
}

/** The Kafka limit: a consumer of the same records that only counts them (eachBatch, no database). */
export async function rawConsume(
  kafka: Kafka,
  topics: string[],
  groupId: string,
  expected: number,
  timeoutMs: number,
): Promise<Run> {
  const consumer = kafka.consumer({ groupId, maxBytesPerPartition: 4 * 1024 * 1024 });
  let count = 0;
  let first = 0;
  let last = 0;
  await consumer.connect();
  await consumer.subscribe({ topics, fromBeginning: true });
  await consumer.run({
    eachBatch: async ({ batch }) => {
      first ||= Date.now();
      count += batch.messages.length;
      last = Date.now();
    },
  });
  const deadline = Date.now() + timeoutMs;
  while (count < expected && Date.now() < deadline) await sleep(20);
  await consumer.disconnect();
  if (count < expected) throw new Error(`raw consume saw ${count} of ${expected} events in ${timeoutMs} ms`);
  return run(count, last - first);
}

const copyText = (s: string) =>
  s.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n').replace(/\r/g, '\\r');

/**
 * The Postgres limit: the same rows (tenant, topic, payload, coordinates, key) written with one COPY FROM STDIN into
 * the migrated journal (all its indexes), no Kafka.
 */
export async function copyRows(databaseUrl: string, events: TrafficEvent[]): Promise<Run> {
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  try {
    // The same row width the project writes since migration 007 (key bytes, record timestamp, content hash), with
    // the per-row values computed before the clock starts: this is Postgres' limit, not Node's.
    const extra = events.map(
      (e) =>
        `\\\\x${Buffer.from(e.key).toString('hex')}\t2026-12-01T00:00:00.000Z\t\\\\x${createHash('sha256').update(e.value).digest('hex')}`,
    );
    const began = Date.now();
    const stream = db.query(
      copyFrom(
        `COPY event_journal (tenant_id, topic, payload, kafka_partition, kafka_offset, kafka_key, kafka_key_bytes,
           kafka_timestamp, content_hash) FROM STDIN`,
      ),
    );
    async function* rows() {
      const chunk = 1000;
      for (let i = 0; i < events.length; i += chunk) {
        let text = '';
        for (let j = i; j < Math.min(events.length, i + chunk); j++) {
          const e = events[j];
          const tenant = e.key.slice(0, e.key.lastIndexOf(':'));
          text += `${copyText(tenant)}\t${e.topic}\t${copyText(e.value)}\t${j % 3}\t${j}\t${copyText(e.key)}\t${extra[j]}\n`;
        }
        yield text;
      }
    }
    await pipeline(Readable.from(rows()), stream as unknown as Writable);
    return run(events.length, Date.now() - began);
  } finally {
    await db.end();
  }
}

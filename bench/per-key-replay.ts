import { performance } from 'node:perf_hooks';
import { Client, Connection } from '@temporalio/client';
import type { RangeReplayInput } from '../workflows/definitions';
import { addSentIds, writeSendPage } from '../repository/send-progress';
import { createPool } from '../shared/db';
import { createKafka, createProducer } from '../shared/kafka';
import { createLogger } from '../shared/logger';
import { withDatabase } from './support/database';
import { benchConfig, machine, uniqueSuffix } from './support/env';
import { createTopics, deleteTopics } from './support/kafka';
import { printTargets, writeResult, type Target } from './support/results';
import { timedRangeReplay, type RangeRun } from './support/range-run';
import { startWorker } from './support/service';
import { ratio, round, summarize } from './support/stats';
import type { BenchOptions } from './options';

const DEFAULT_EVENTS = 20_000;
/** Keys the events are spread over, in turn: a page of 500 holds five events of each, so five waves. */
const KEYS = 100;
const STEP_MS = 10;
/** Single-row progress writes timed on their own, as a wave's write is sent. */
const WRITES = 2_000;

/**
 * per_key range replay: rangeReplayWorkflow over N rows (default 20,000) of 100 keys in turn, in per_key order (pages
 * of 500 sent in five waves, each wave's progress written to send_progress before it is sent), against the same range
 * in the default order (each page in one send), in alternating order per repeat. Also a wave's progress write
 * alone (addSentIds on the pool, sequential), the cost each wave adds.
 */
export async function perKeyReplayBench({ repeat, events: requested }: BenchOptions) {
  const events = requested ?? DEFAULT_EVENTS;
  const started = machine();
  const suffix = uniqueSuffix();
  const target = `bench.${suffix}.per-key.target`;
  const base = benchConfig();
  const log = createLogger('silent');
  const kafka = createKafka(base.kafka.brokers, 'crm-bench-per-key', log);
  await createTopics(kafka, [target], 3);
  try {
    await withDatabase(base.databaseUrl, 'per_key_replay', async (db) => {
      const config = benchConfig({
        DATABASE_URL: db.databaseUrl,
        TEMPORAL_TASK_QUEUE: `bench-per-key-${suffix}`,
        REPLAY_TARGET_TOPICS: target,
      });
      const pool = createPool(config.databaseUrl, 10, log);
      const from = new Date('2024-01-01T00:00:00Z');
      await pool.query(
        `INSERT INTO event_journal (tenant_id, topic, payload, received_at, kafka_key, kafka_key_bytes)
         SELECT 'acme', 'apexflow.leads.created',
                jsonb_build_object('event_type', 'lead.updated', 'tenant_id', 'acme', 'lead_id', g % $2, 'seq', g,
                                   'notes', 'Asked for a callback about the premium plan; prefers mornings.'),
                $3::timestamptz + make_interval(secs => g * $4::float8 / 1000),
                'lead-' || (g % $2), convert_to('lead-' || (g % $2), 'UTF8')
           FROM generate_series(0, $1 - 1) AS g`,
        [events, KEYS, from, STEP_MS],
      );
      await pool.query('VACUUM ANALYZE event_journal');
      const range = {
        start: from.toISOString(),
        end: new Date(from.getTime() + events * STEP_MS + 1000).toISOString(),
      };
      const producer = createProducer(kafka);
      await producer.connect();
      const worker = await startWorker(config, pool, producer, log);
      const connection = await Connection.connect({ address: config.temporal.address });
      const client = new Client({ connection, namespace: config.temporal.namespace });
      const samples = { perKey: [] as number[], unordered: [] as number[], writesPerSecond: [] as number[] };
      const run: RangeRun = {
        client,
        kafka,
        taskQueue: config.temporal.taskQueue,
        range,
        target,
        events,
        pageSize: config.replay.pageSize,
      };
      const replayRange = (workflowId: string, options: Partial<RangeReplayInput>) =>
        timedRangeReplay(run, workflowId, options);
      try {
        await replayRange(`bench-per-key-warm-${suffix}`, {}); // warm the worker
        for (let r = 0; r < repeat; r++) {
          const modes = [
            async () => samples.perKey.push(await replayRange(`bench-per-key-${suffix}-${r}`, { ordering: 'per_key' })),
            async () => samples.unordered.push(await replayRange(`bench-unordered-${suffix}-${r}`, {})),
          ];
          for (const mode of r % 2 === 0 ? modes : modes.reverse()) await mode();
          const key = {
            workflowId: `bench-writes-${r}`,
            runId: `bench-writes-${suffix}-${r}`,
            activityId: '1',
            fence: 1,
          };
          await writeSendPage(pool, key, 0, { cursor: 0, read: 0, published: 0, failed: 0, done: false, pages: 0 });
          const t0 = performance.now();
          for (let i = 0; i < WRITES; i++) {
            await addSentIds(
              pool,
              key,
              0,
              [1, 2, 3, 4, 5].map((j) => i * 5 + j),
            ); // a wave's ids, after the page's first
          }
          samples.writesPerSecond.push(Math.round(WRITES / ((performance.now() - t0) / 1000)));
          console.log(
            `[per-key-replay] #${r + 1} per_key ${samples.perKey[r]} ev/s, default order ${samples.unordered[r]} ev/s, progress writes ${samples.writesPerSecond[r]}/s`,
          );
        }
      } finally {
        await connection.close();
        await worker.stop();
        await producer.disconnect();
        await pool.end();
      }
      const perKey = summarize(samples.perKey);
      const unordered = summarize(samples.unordered);
      const writes = summarize(samples.writesPerSecond);
      const pageSize = config.replay.pageSize;
      const wavesPerPage = Math.ceil(pageSize / KEYS);
      // Of the per_key run's time, what its progress writes take at the measured rate (one per wave).
      const waves = Math.ceil(events / pageSize) * wavesPerPage;
      const writeShare = round(waves / writes.median / (events / perKey.median), 3);
      const ratios = { perKeyOverDefault: ratio(perKey.median, unordered.median) };
      const targets: Target[] = [
        {
          name: 'progress writes / per_key replay time',
          target: '<= 0.10',
          actual: writeShare,
          met: writeShare <= 0.1,
        },
      ];
      const file = writeResult(events === DEFAULT_EVENTS ? 'per-key-replay' : `per-key-replay-${events}`, started, {
        parameters: { events, keys: KEYS, pageSize, wavesPerPage, repeat, targetPartitions: 3, writes: WRITES },
        method: {
          perKey: `client.workflow.execute(rangeReplayWorkflow) with ordering per_key on the project worker (in the benchmark process, private task queue): pages of ${pageSize} of ${KEYS} keys in turn, sent in ${wavesPerPage} waves each, each wave's progress written to send_progress first; published count and topic growth checked`,
          default:
            'the same workflow and range without ordering (each page in one send), same repeat, alternating which runs first',
          writes: `${WRITES} sequential addSentIds of a wave's 5 ids (what each wave after a page's first writes) on the pool`,
        },
        eventsPerSecond: { perKey, default: unordered },
        progressWritesPerSecond: writes,
        waves,
        writeShareOfPerKeyTime: writeShare,
        ratios,
        targets,
      });
      printTargets('per-key-replay', targets);
      console.log(`[per-key-replay] wrote ${file}`);
    });
  } finally {
    await deleteTopics(kafka, [target]);
  }
}

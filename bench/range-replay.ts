import { performance } from 'node:perf_hooks';
import { Client, Connection } from '@temporalio/client';
import type { Producer } from 'kafkajs';
import { loadLineageKey, toReplayMessage } from '../journal/lineage';
import { rangePage, type RangeFilter } from '../repository/event-journal';
import type { Config } from '../shared/config';
import { createPool, type Pool } from '../shared/db';
import { createKafka, createProducer } from '../shared/kafka';
import { createLogger } from '../shared/logger';
import type { RangeReplayResult } from '../workflows/definitions';
import { withDatabase } from './support/database';
import { benchConfig, machine, uniqueSuffix } from './support/env';
import { seedSeries } from './support/journal';
import { createTopics, deleteTopics, topicsSize } from './support/kafka';
import { printTargets, writeResult, type Target } from './support/results';
import { postReplay, startApi, startWorker } from './support/service';
import { ratio, round, summarize } from './support/stats';
import type { BenchOptions } from './options';

const EVENTS = 100_000;
const SEEDS_SAMPLE = 200;
const STEP_MS = 10;

/**
 * Range replay throughput over 100,000 seeded rows to a scratch topic: rangeReplayWorkflow on the project's worker,
 * against a raw loop (same keyset pages, same messages, one sendBatch per page) and against the seeds' method
 * (sequential POST /replay/:id), measured on 200 and extrapolated.
 */
export async function rangeReplayBench({ repeat }: BenchOptions) {
  const started = machine();
  const suffix = uniqueSuffix();
  const target = `bench.${suffix}.range.target`;
  const base = benchConfig();
  const log = createLogger('silent');
  const kafka = createKafka(base.kafka.brokers, 'crm-bench-range', log);
  await createTopics(kafka, [target], 3);
  try {
    await withDatabase(base.databaseUrl, 'range_replay', async (db) => {
      const config = benchConfig({
        DATABASE_URL: db.databaseUrl,
        TEMPORAL_TASK_QUEUE: `bench-range-${suffix}`,
        API_REPLAY_RATE_LIMIT_PER_MINUTE: '1000000',
      });
      const pool = createPool(config.databaseUrl, 10, log);
      const from = new Date('2024-01-01T00:00:00Z');
      const seedBegan = Date.now();
      await seedSeries(pool, {
        count: EVENTS,
        topics: ['apexflow.leads.created', 'apexflow.jobs.created'],
        tenants: 50,
        from,
        stepMs: STEP_MS,
      });
      await pool.query('VACUUM ANALYZE event_journal');
      console.log(`[range-replay] seeded ${EVENTS} rows in ${(Date.now() - seedBegan) / 1000} s`);
      const range = {
        start: from.toISOString(),
        end: new Date(from.getTime() + EVENTS * STEP_MS + 1000).toISOString(),
      };

      const producer = createProducer(kafka);
      await producer.connect();
      const worker = await startWorker(config, pool, producer, log);
      const api = await startApi(config, pool, log);
      const connection = await Connection.connect({ address: config.temporal.address });
      const client = new Client({ connection, namespace: config.temporal.namespace });
      const samples = { workflow: [] as number[], rawLoop: [] as number[], seeds: [] as number[] };
      try {
        const ids = (
          await pool.query<{ id: number }>('SELECT id FROM event_journal ORDER BY id LIMIT $1', [SEEDS_SAMPLE])
        ).rows.map((r) => r.id);
        // Warm the worker and the API's Temporal client; the very first replay may outlast the API's wait (202).
        await client.workflow.getHandle(await postReplay(api.url, ids[0], target, true)).result();
        for (let r = 0; r < repeat; r++) {
          const before = await topicsSize(kafka, [target]);
          const t0 = performance.now();
          const result = await client.workflow.execute('rangeReplayWorkflow', {
            taskQueue: config.temporal.taskQueue,
            workflowId: `bench-range-${suffix}-${r}`,
            args: [{ ...range, targetTopic: target, source: 'bench', pageSize: config.replay.pageSize }],
          });
          const workflowSeconds = (performance.now() - t0) / 1000;
          const published = (result as Extract<RangeReplayResult, { published: number }>).published;
          const onTopic = (await topicsSize(kafka, [target])) - before;
          if (published !== EVENTS || onTopic !== EVENTS)
            throw new Error(`workflow published ${published}, topic grew by ${onTopic}, expected ${EVENTS}`);
          samples.workflow.push(Math.round(EVENTS / workflowSeconds));

          const rawSeconds = await rawLoop(
            pool,
            producer,
            config,
            { ...range, maxId: Number.MAX_SAFE_INTEGER },
            target,
            `bench-raw-${suffix}-${r}`,
          );
          samples.rawLoop.push(Math.round(EVENTS / rawSeconds));

          const t1 = performance.now();
          for (const id of ids) await postReplay(api.url, id, target);
          samples.seeds.push(round(SEEDS_SAMPLE / ((performance.now() - t1) / 1000)));
          console.log(
            `[range-replay] #${r + 1} workflow ${samples.workflow[r]} ev/s, raw loop ${samples.rawLoop[r]} ev/s, seeds' POST /replay/:id ${samples.seeds[r]} ev/s`,
          );
        }
      } finally {
        await connection.close();
        await api.app.close();
        await worker.stop();
        await producer.disconnect();
        await pool.end();
      }

      const workflow = summarize(samples.workflow);
      const rawLoopRate = summarize(samples.rawLoop);
      const seeds = summarize(samples.seeds);
      const ratios = {
        workflowOverRawLoop: ratio(workflow.median, rawLoopRate.median),
        workflowOverSeeds: ratio(workflow.median, seeds.median),
      };
      const targets: Target[] = [
        {
          name: 'rangeReplayWorkflow events/s',
          target: '>= 20000',
          actual: workflow.median,
          met: workflow.median >= 20_000,
        },
        {
          name: 'workflow / raw loop',
          target: '>= 0.50',
          actual: ratios.workflowOverRawLoop,
          met: ratios.workflowOverRawLoop >= 0.5,
        },
      ];
      const file = writeResult('range-replay', started, {
        parameters: {
          events: EVENTS,
          pageSize: config.replay.pageSize,
          seedsSample: SEEDS_SAMPLE,
          repeat,
          targetPartitions: 3,
        },
        method: {
          workflow:
            'client.workflow.execute(rangeReplayWorkflow) on the project worker (in the benchmark process, private task queue) until its result; published count and topic growth checked',
          rawLoop:
            'in the benchmark: rangePage keyset pages of the same size, toReplayMessage, one producer.sendBatch per page (same idempotent producer settings)',
          seeds: `sequential POST /replay/:id?target_topic on ${SEEDS_SAMPLE} ids (the seeds' way), extrapolated to ${EVENTS}`,
        },
        eventsPerSecond: { workflow, rawLoop: rawLoopRate, seeds },
        extrapolatedSeedsSeconds: round(EVENTS / seeds.median),
        ratios,
        targets,
      });
      printTargets('range-replay', targets);
      console.log(`[range-replay] wrote ${file}`);
    });
  } finally {
    await deleteTopics(kafka, [target]);
  }
}

/** The lean loop: read a keyset page, turn it into replay messages, send it in one call, until a short page. */
async function rawLoop(
  pool: Pool,
  producer: Producer,
  config: Config,
  filter: RangeFilter,
  target: string,
  replayId: string,
): Promise<number> {
  const lineageKey = await loadLineageKey(pool, config.lineageKey);
  const t0 = performance.now();
  let cursor = 0;
  let sent = 0;
  for (;;) {
    const rows = await rangePage(pool, filter, cursor, config.replay.pageSize);
    if (rows.length) {
      const messages = rows.map((row) =>
        toReplayMessage(row, { source: 'bench_raw', replayId, targetTopic: target }, lineageKey),
      );
      await producer.sendBatch({
        acks: -1,
        topicMessages: [
          { topic: target, messages: messages.map(({ key, value, headers }) => ({ key, value, headers })) },
        ],
      });
      sent += rows.length;
      cursor = rows[rows.length - 1].id;
    }
    if (rows.length < config.replay.pageSize) break;
  }
  if (sent !== EVENTS) throw new Error(`raw loop sent ${sent} of ${EVENTS}`);
  return (performance.now() - t0) / 1000;
}

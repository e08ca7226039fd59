import type { ChildProcess } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { Client, Connection } from '@temporalio/client';
import { createPool } from '../shared/db';
import { createKafka } from '../shared/kafka';
import { createLogger } from '../shared/logger';
import type { RangeReplayInput, RangeReplayResult, ReplayProgress } from '../workflows/definitions';
import { clusterAddresses, clusterMembers } from './support/cluster';
import { withDatabase } from './support/database';
import { benchConfig, machine, uniqueSuffix, waitUntil } from './support/env';
import { seedReplayRange } from './support/journal';
import { createTopics, deleteTopics, topicsSize } from './support/kafka';
import { spawnCli, stopChild } from './support/process';
import { printTargets, writeResult, type Target } from './support/results';
import { ratio, summarize } from './support/stats';
import type { BenchOptions } from './options';

const DEFAULT_EVENTS = 100_000;
const SHARDS = 4;
const STEP_MS = 10;

/**
 * Sharded range replay with one worker process, then two, on one task queue: the compiled `worker` command as child
 * processes (as deployed), the same range of 100,000 seeded rows (or --events) replayed to a scratch topic, split into
 * SHARDS children. Each repeat also runs the range unsharded on one worker (the baseline of the same run). Reports
 * events/s from start to result, and the ratios two workers / one and sharded / unsharded.
 */
export async function shardedReplayBench({ repeat, events: requested, profile }: BenchOptions) {
  const events = requested ?? DEFAULT_EVENTS;
  const started = machine();
  const suffix = uniqueSuffix();
  const target = `bench.${suffix}.sharded.target`;
  const stack = profile === 'cluster' ? clusterEnv() : {};
  const base = benchConfig(stack);
  const log = createLogger('silent');
  const kafka = createKafka(base.kafka.brokers, 'crm-bench-sharded', log);
  await createTopics(kafka, [target], 6);
  try {
    await withDatabase(base.databaseUrl, 'sharded_replay', async (db) => {
      const taskQueue = `bench-sharded-${suffix}`;
      const workerEnv = {
        ...stack,
        DATABASE_URL: db.databaseUrl,
        TEMPORAL_TASK_QUEUE: taskQueue,
        REPLAY_TARGET_TOPICS: target,
      };
      const config = benchConfig(workerEnv);
      const pool = createPool(config.databaseUrl, 2, log);
      const range = await seedReplayRange(pool, events, STEP_MS);
      await pool.end();
      const connection = await Connection.connect({ address: config.temporal.address });
      const client = new Client({ connection, namespace: config.temporal.namespace });
      const workers: ChildProcess[] = [];

      const replay = async (workflowId: string, options: Partial<RangeReplayInput>) => {
        const before = await topicsSize(kafka, [target]);
        const t0 = performance.now();
        const result = (await client.workflow.execute('rangeReplayWorkflow', {
          taskQueue,
          workflowId,
          args: [{ ...range, targetTopic: target, source: 'bench', pageSize: config.replay.pageSize, ...options }],
        })) as Extract<RangeReplayResult, { published: number }> & Pick<ReplayProgress, 'shards'>;
        const seconds = (performance.now() - t0) / 1000;
        const onTopic = (await topicsSize(kafka, [target])) - before;
        if (result.published !== events || onTopic !== events)
          throw new Error(`${workflowId}: published ${result.published}, topic grew by ${onTopic}, expected ${events}`);
        if ((result.shards?.length ?? 0) !== (options.sharding ? SHARDS : 0))
          throw new Error(`${workflowId}: ran as ${result.shards?.length ?? 0} shards`);
        return Math.round(events / seconds);
      };
      let spawned = 0;
      /**
       * Starts one more worker process and waits until it polls both the workflow and activity queues: the server
       * lists every poller seen lately by identity (pid@host), stopped ones included, so one more than ever started.
       */
      const addWorker = async () => {
        workers.push(spawnCli('worker', workerEnv));
        spawned++;
        const polling = async (type: 1 | 2) => {
          const { pollers } = await client.workflowService.describeTaskQueue({
            namespace: config.temporal.namespace,
            taskQueue: { name: taskQueue },
            taskQueueType: type, // 1: workflow tasks, 2: activity tasks
          });
          return new Set((pollers ?? []).map((p) => p.identity)).size;
        };
        await waitUntil(
          async () => ((await polling(1)) >= spawned && (await polling(2)) >= spawned) || undefined,
          `worker process ${spawned} polling ${taskQueue}`,
          60_000,
        );
      };
      const sharding = { threshold: 1, shards: SHARDS };
      const samples = { unsharded: [] as number[], oneWorker: [] as number[], twoWorkers: [] as number[] };
      try {
        await addWorker();
        // Interleaved, so that each repeat's runs with one and with two workers see about the same machine load.
        for (let r = 0; r < repeat; r++) {
          samples.unsharded.push(await replay(`bench-unsharded-${suffix}-${r}`, {}));
          samples.oneWorker.push(await replay(`bench-sharded-1w-${suffix}-${r}`, { sharding }));
          await addWorker();
          samples.twoWorkers.push(await replay(`bench-sharded-2w-${suffix}-${r}`, { sharding }));
          await stopChild(workers.pop()!);
          console.log(
            `[sharded-replay] #${r + 1} one worker: unsharded ${samples.unsharded[r]} ev/s, ${SHARDS} shards ${samples.oneWorker[r]} ev/s; two workers: ${SHARDS} shards ${samples.twoWorkers[r]} ev/s`,
          );
        }
      } finally {
        await Promise.all(workers.map((w) => stopChild(w)));
        await connection.close();
      }

      const unsharded = summarize(samples.unsharded);
      const oneWorker = summarize(samples.oneWorker);
      const twoWorkers = summarize(samples.twoWorkers);
      const ratios = {
        twoWorkersOverOne: ratio(twoWorkers.median, oneWorker.median),
        shardedOverUnshardedOneWorker: ratio(oneWorker.median, unsharded.median),
      };
      const targets: Target[] = [
        {
          name: 'two worker processes / one (sharded)',
          target: '> 1.00 where a second core is free',
          actual: ratios.twoWorkersOverOne,
          met: ratios.twoWorkersOverOne > 1,
        },
      ];
      const file = writeResult(profile === 'cluster' ? 'sharded-replay-cluster' : 'sharded-replay', started, {
        parameters: { events, shards: SHARDS, pageSize: config.replay.pageSize, repeat, targetPartitions: 6 },
        method: {
          stack:
            profile === 'cluster'
              ? 'the cluster profile (three KRaft brokers, the Temporal server on Postgres, its own Postgres; its two ingest, worker and API processes running beside the benchmark, idle)'
              : 'the local stack (Temporal CLI dev server on sqlite, one Kafka broker, one Postgres), not the cluster profile',
          workers:
            'the compiled `worker` command as child processes on one private task queue; each repeat runs unsharded and sharded on one worker, then starts a second (waiting until the server lists it polling workflow and activity tasks), runs sharded on both, and stops the second',
          unsharded: 'rangeReplayWorkflow over the whole range without sharding, one worker process',
          sharded: `the same range with sharding {threshold: 1, shards: ${SHARDS}}: ${SHARDS} child workflows of id ranges; client.workflow.execute until the result; published count, shard count and topic growth checked`,
        },
        eventsPerSecond: { unsharded, oneWorker, twoWorkers },
        ratios,
        targets,
      });
      printTargets('sharded-replay', targets);
      console.log(`[sharded-replay] wrote ${file}`);
    });
  } finally {
    await deleteTopics(kafka, [target]);
  }
}

/** The cluster profile's addresses (`stack.sh status --profile cluster`) as the service's settings. */
function clusterEnv(): Record<string, string> {
  const cluster = clusterAddresses(clusterMembers());
  return {
    DATABASE_URL: cluster.databaseUrl,
    KAFKA_BROKERS: cluster.brokers.join(','),
    TEMPORAL_ADDRESS: cluster.temporal,
  };
}

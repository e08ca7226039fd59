import { performance } from 'node:perf_hooks';
import { loadLineageKey, toReplayMessage } from '../journal/lineage';
import { replayRows } from '../repository/event-journal';
import { createPool, type Pool } from '../shared/db';
import { createKafka, createProducer } from '../shared/kafka';
import { createLogger } from '../shared/logger';
import { withDatabase } from './support/database';
import { benchConfig, machine, sleep, uniqueSuffix } from './support/env';
import { journalEvents } from './support/journal';
import { benchTopics, createTopics, deleteTopics, makeEvents } from './support/kafka';
import { spawnCli, stopChild } from './support/process';
import { printTargets, writeResult, type Target } from './support/results';
import { postReplay, startApi, startWorker } from './support/service';
import { percentiles, summarize } from './support/stats';
import type { BenchOptions } from './options';

const REPLAYS = 200;
const WARMUP = 5;

/**
 * Single replay latency: POST /replay/:id until the replayed row is back in the journal (API, worker and ingest all
 * real), against producing the same replay record straight to Kafka and waiting for the same row.
 */
export async function replayLatencyBench({ repeat }: BenchOptions) {
  const started = machine();
  const suffix = uniqueSuffix();
  const topics = benchTopics(suffix);
  const base = benchConfig();
  const log = createLogger('silent');
  const kafka = createKafka(base.kafka.brokers, 'crm-bench-replay', log);
  await createTopics(kafka, [topics.leads, topics.jobs], 3);
  try {
    await withDatabase(base.databaseUrl, 'replay_latency', async (db) => {
      const config = benchConfig({
        DATABASE_URL: db.databaseUrl,
        KAFKA_TOPICS: `${topics.leads},${topics.jobs}`,
        KAFKA_GROUP_ID: `bench-replay-${suffix}`,
        TEMPORAL_TASK_QUEUE: `bench-replay-${suffix}`,
        API_REPLAY_RATE_LIMIT_PER_MINUTE: '1000000',
      });
      const pool = createPool(config.databaseUrl, 10, log);
      const lineageKey = await loadLineageKey(pool, config.lineageKey);
      const producer = createProducer(kafka);
      await producer.connect();
      const ingest = spawnCli('ingest', {
        DATABASE_URL: config.databaseUrl,
        KAFKA_TOPICS: config.kafka.topics.join(','),
        KAFKA_GROUP_ID: config.kafka.groupId,
      });
      const worker = await startWorker(config, pool, producer, log);
      const api = await startApi(config, pool, log);
      try {
        const ids = await journalEvents(pool, makeEvents(REPLAYS, topics, 50));
        // Warm-ups may outlast the API's wait on a cold worker (202); the row is awaited either way.
        for (const id of ids.slice(0, WARMUP))
          await waitForRow(pool, id, await postReplay(api.url, id, undefined, true), 30_000);

        const project: ReturnType<typeof percentiles>[] = [];
        const direct: ReturnType<typeof percentiles>[] = [];
        const apiAnswer: ReturnType<typeof percentiles>[] = [];
        const raw = { project: [] as number[][], direct: [] as number[][] };
        for (let r = 0; r < repeat; r++) {
          const viaApi: number[] = [];
          const answered: number[] = [];
          for (const id of ids) {
            const t0 = performance.now();
            const workflowId = await postReplay(api.url, id);
            answered.push(performance.now() - t0);
            await waitForRow(pool, id, workflowId, 30_000);
            viaApi.push(performance.now() - t0);
          }
          const viaKafka: number[] = [];
          for (const id of ids) {
            const [row] = await replayRows(pool, [id]);
            const message = toReplayMessage(
              row,
              { source: 'bench_direct', replayId: `direct-${suffix}-${r}-${id}` },
              lineageKey,
            );
            const t0 = performance.now();
            await producer.send({
              topic: message.topic,
              acks: -1,
              messages: [{ key: message.key, value: message.value, headers: message.headers }],
            });
            await waitForRow(pool, id, String(message.headers['x-replay-id']), 30_000);
            viaKafka.push(performance.now() - t0);
          }
          project.push(percentiles(viaApi));
          apiAnswer.push(percentiles(answered));
          direct.push(percentiles(viaKafka));
          raw.project.push(viaApi.map((ms) => Math.round(ms * 10) / 10));
          raw.direct.push(viaKafka.map((ms) => Math.round(ms * 10) / 10));
          console.log(
            `[replay-latency] #${r + 1} POST /replay p50/p95/p99 ${project[r].p50}/${project[r].p95}/${project[r].p99} ms; direct Kafka ${direct[r].p50}/${direct[r].p95}/${direct[r].p99} ms`,
          );
        }
        const across = (runs: ReturnType<typeof percentiles>[]) => ({
          p50: summarize(runs.map((p) => p.p50)),
          p95: summarize(runs.map((p) => p.p95)),
          p99: summarize(runs.map((p) => p.p99)),
        });
        const projectSummary = across(project);
        const directSummary = across(direct);
        const pooled = { project: percentiles(raw.project.flat()), direct: percentiles(raw.direct.flat()) };
        const targets: Target[] = [
          {
            name: 'POST /replay/:id → row journaled, p99 ms (median of repeats)',
            target: '<= 300',
            actual: projectSummary.p99.median,
            met: projectSummary.p99.median <= 300,
          },
        ];
        const file = writeResult('replay-latency', started, {
          parameters: { replays: REPLAYS, warmup: WARMUP, repeat, topics: 2, partitionsPerTopic: 3 },
          method: {
            project:
              'POST /replay/:id on the real API (buildApp, listening) → replayEventWorkflow on a real worker (private task queue, dev server) → Kafka → the compiled ingest command (child process) → row with that _replay_id in the journal, polled every 5 ms; sequential',
            apiAnswer: 'time until the API answered 200 (the workflow has published)',
            direct:
              'the same replay record (toReplayMessage) produced straight to Kafka with the idempotent producer, acks=all, then the same wait for the row',
          },
          latencyMs: { project: projectSummary, apiAnswer: across(apiAnswer), direct: directSummary, pooled },
          ratios: {
            p50ProjectOverDirect: Math.round((projectSummary.p50.median / directSummary.p50.median) * 100) / 100,
            p99ProjectOverDirect: Math.round((projectSummary.p99.median / directSummary.p99.median) * 100) / 100,
          },
          perRepeat: { project, apiAnswer, direct },
          raw,
          targets,
        });
        printTargets('replay-latency', targets);
        console.log(`[replay-latency] wrote ${file}`);
      } finally {
        await api.app.close();
        await worker.stop();
        await stopChild(ingest);
        await producer.disconnect();
        await pool.end();
      }
    });
  } finally {
    await deleteTopics(kafka, [topics.leads, topics.jobs]);
  }
}

/** Polls (every 5 ms) for the journal row of one replay of one event; uses the replay-once index. */
async function waitForRow(pool: Pool, eventId: number, replayId: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { rowCount } = await pool.query(
      `SELECT 1 FROM event_journal WHERE replay_count > 0 AND payload ? '_replay_id'
          AND payload->>'_replay_id' = $1 AND payload->>'_replayed_from_event_id' = $2`,
      [replayId, String(eventId)],
    );
    if (rowCount) return;
    if (Date.now() > deadline)
      throw new Error(`replay ${replayId} of event ${eventId} not journaled within ${timeoutMs} ms`);
    await sleep(5);
  }
}

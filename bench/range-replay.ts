import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Client, Connection } from '@temporalio/client';
import type { Producer } from 'kafkajs';
import { loadLineageKey, toReplayMessage } from '../journal/lineage';
import { replayTransform } from '../journal/transform';
import { rangePage, type RangeFilter } from '../repository/event-journal';
import type { Config } from '../shared/config';
import { createPool, type Pool } from '../shared/db';
import { createKafka, createProducer } from '../shared/kafka';
import { createLogger } from '../shared/logger';
import type { RangeReplayInput } from '../workflows/definitions';
import { createArchiveStore } from '../archive';
import { archiveWindow } from './support/archive';
import { withDatabase } from './support/database';
import { benchConfig, machine, uniqueSuffix } from './support/env';
import { seedReplayRange } from './support/journal';
import { createTopics, deleteTopics } from './support/kafka';
import { printTargets, writeResult, type Target } from './support/results';
import { timedRangeReplay, type RangeRun } from './support/range-run';
import { postReplay, startApi, startWorker } from './support/service';
import { ratio, round, summarize } from './support/stats';
import type { BenchOptions } from './options';

const DEFAULT_EVENTS = 100_000;
const SEEDS_SAMPLE = 200;
const STEP_MS = 10;
/** A payload filter every seeded row matches: the predicate is evaluated on each row, and every row is still sent. */
const PAYLOAD_FILTER = '$.source == "web-form" && $.lead_id > 0';
/** A rename and an added field for a new consumer: each payload parsed, patched and serialised again. */
const TRANSFORM = replayTransform([
  { op: 'move', from: '/name', path: '/full_name' },
  { op: 'add', path: '/consumer', value: 'bench' },
]);

/**
 * Range replay throughput over 100,000 seeded rows (or --events) to a scratch topic: rangeReplayWorkflow on the
 * project's worker, against a raw loop (same keyset pages, same messages, one sendBatch per page) and against the
 * seeds' method (sequential POST /replay/:id), measured on 200 and extrapolated. Then cold replay: the same rows
 * archived as one segment and removed from the journal, and the same workflow over the same range, read from the
 * archive. Each repeat also runs the workflow with a payload filter (matching every row) and with a transform (a JSON
 * Patch on every payload), in alternating order, reported as ratios of medians to the plain run's. A run with --events writes
 * range-replay-<events>.json, leaving the default size's result in place.
 */
export async function rangeReplayBench({ repeat, events: requested }: BenchOptions) {
  const events = requested ?? DEFAULT_EVENTS;
  const started = machine();
  const suffix = uniqueSuffix();
  const target = `bench.${suffix}.range.target`;
  const archiveDir = path.join(os.tmpdir(), `crm-bench-archive-${suffix}`);
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
        // The scratch topic is where replays may publish (the allow-list's default is the ingested topics).
        REPLAY_TARGET_TOPICS: target,
        ARCHIVE_STORE: 'local',
        ARCHIVE_DIR: archiveDir,
      });
      const pool = createPool(config.databaseUrl, 10, log);
      const seedBegan = Date.now();
      const range = await seedReplayRange(pool, events, STEP_MS);
      console.log(`[range-replay] seeded ${events} rows in ${(Date.now() - seedBegan) / 1000} s`);

      const producer = createProducer(kafka);
      await producer.connect();
      const plain = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
      await plain.connect();
      const worker = await startWorker(config, pool, producer, log);
      const api = await startApi(config, pool, log);
      const connection = await Connection.connect({ address: config.temporal.address });
      const client = new Client({ connection, namespace: config.temporal.namespace });
      const samples = {
        workflow: [] as number[],
        rawLoop: [] as number[],
        rawLoopPlain: [] as number[],
        seeds: [] as number[],
        cold: [] as number[],
        filtered: [] as number[],
        transformed: [] as number[],
      };
      let archiveSeconds = 0;
      const run: RangeRun = {
        client,
        kafka,
        taskQueue: config.temporal.taskQueue,
        range,
        target,
        events,
        pageSize: config.replay.pageSize,
      };
      const replayRange = (workflowId: string, options?: Partial<RangeReplayInput>) =>
        timedRangeReplay(run, workflowId, options);
      try {
        const ids = (
          await pool.query<{ id: number }>('SELECT id FROM event_journal ORDER BY id LIMIT $1', [SEEDS_SAMPLE])
        ).rows.map((r) => r.id);
        // Warm the worker and the API's Temporal client; the very first replay may outlast the API's wait (202).
        await client.workflow.getHandle(await postReplay(api.url, ids[0], target, true)).result();
        for (let r = 0; r < repeat; r++) {
          // Odd repeats run the three in reverse order, so that neither mode always runs first on a busy machine.
          const modes = [
            async () => samples.workflow.push(await replayRange(`bench-range-${suffix}-${r}`)),
            async () =>
              samples.filtered.push(
                await replayRange(`bench-range-filtered-${suffix}-${r}`, { payloadFilter: PAYLOAD_FILTER }),
              ),
            async () =>
              samples.transformed.push(
                await replayRange(`bench-range-transformed-${suffix}-${r}`, { transform: TRANSFORM }),
              ),
          ];
          for (const mode of r % 2 === 0 ? modes : modes.reverse()) await mode();

          const rawSeconds = await rawLoop(
            pool,
            producer,
            config,
            { ...range, maxId: Number.MAX_SAFE_INTEGER },
            target,
            `bench-raw-${suffix}-${r}`,
            events,
          );
          samples.rawLoop.push(Math.round(events / rawSeconds));

          // The same loop without transactions (before the replay producer's sends were fenced): what they cost.
          const plainSeconds = await rawLoop(
            pool,
            plain,
            config,
            { ...range, maxId: Number.MAX_SAFE_INTEGER },
            target,
            `bench-raw-plain-${suffix}-${r}`,
            events,
          );
          samples.rawLoopPlain.push(Math.round(events / plainSeconds));

          const t1 = performance.now();
          for (const id of ids) await postReplay(api.url, id, target);
          samples.seeds.push(round(SEEDS_SAMPLE / ((performance.now() - t1) / 1000)));
          console.log(
            `[range-replay] #${r + 1} workflow ${samples.workflow[r]} ev/s, with payload filter ${samples.filtered[r]} ev/s, with transform ${samples.transformed[r]} ev/s, raw loop ${samples.rawLoop[r]} ev/s (without transactions ${samples.rawLoopPlain[r]}), seeds' POST /replay/:id ${samples.seeds[r]} ev/s`,
          );
        }

        // Cold: every row archived (one segment, verified) and removed from the journal; the same range again.
        const a0 = performance.now();
        const manifest = await archiveWindow(pool, createArchiveStore(config.archive), {
          segment: `bench-range-${suffix}`,
          from: range.start,
          before: range.end,
        });
        archiveSeconds = round((performance.now() - a0) / 1000);
        if (manifest.rows !== events) throw new Error(`archived ${manifest.rows} rows, expected ${events}`);
        console.log(
          `[range-replay] archived ${manifest.rows} rows (${manifest.file.bytes} bytes) in ${archiveSeconds} s`,
        );
        for (let r = 0; r < repeat; r++) {
          samples.cold.push(await replayRange(`bench-range-cold-${suffix}-${r}`));
          console.log(`[range-replay] cold #${r + 1} workflow from the archive ${samples.cold[r]} ev/s`);
        }
      } finally {
        await connection.close();
        await api.app.close();
        await worker.stop();
        await producer.disconnect();
        await plain.disconnect();
        await pool.end();
      }

      const workflow = summarize(samples.workflow);
      const rawLoopRate = summarize(samples.rawLoop);
      const rawLoopPlain = summarize(samples.rawLoopPlain);
      const seeds = summarize(samples.seeds);
      const cold = summarize(samples.cold);
      const filtered = summarize(samples.filtered);
      const transformed = summarize(samples.transformed);
      const ratios = {
        filteredOverPlain: ratio(filtered.median, workflow.median),
        transformedOverPlain: ratio(transformed.median, workflow.median),
        coldOverHot: ratio(cold.median, workflow.median),
        workflowOverRawLoop: ratio(workflow.median, rawLoopRate.median),
        workflowOverRawLoopWithoutTransactions: ratio(workflow.median, rawLoopPlain.median),
        rawLoopOverRawLoopWithoutTransactions: ratio(rawLoopRate.median, rawLoopPlain.median),
        workflowOverSeeds: ratio(workflow.median, seeds.median),
      };
      const targets: Target[] = [
        atLeast('rangeReplayWorkflow events/s', workflow.median, 20_000, '>= 20000'),
        atLeast('workflow / raw loop', ratios.workflowOverRawLoop, 0.5),
        atLeast('with payload filter / plain range replay', ratios.filteredOverPlain, 0.7),
        atLeast('with transform / plain range replay', ratios.transformedOverPlain, 0.7),
        atLeast('cold replay (archive) / range replay (Postgres)', ratios.coldOverHot, 0.5),
      ];
      const file = writeResult(events === DEFAULT_EVENTS ? 'range-replay' : `range-replay-${events}`, started, {
        parameters: {
          events: events,
          pageSize: config.replay.pageSize,
          seedsSample: SEEDS_SAMPLE,
          repeat,
          targetPartitions: 3,
        },
        method: {
          workflow:
            'client.workflow.execute(rangeReplayWorkflow) on the project worker (in the benchmark process, private task queue) until its result; published count and topic growth checked',
          rawLoop:
            'in the benchmark: rangePage keyset pages of the same size, toReplayMessage, one sendBatch per page on the project replay producer (createProducer: each send a transaction)',
          rawLoopPlain:
            'the same loop on a plain idempotent kafkajs producer (acks=all, 1 request in flight, no transactions): the cost of the transactions the replay producer runs each send in',
          filtered: `the same workflow over the same range with payloadFilter ${JSON.stringify(PAYLOAD_FILTER)} (every seeded row matches: the predicate is evaluated on each row by Postgres and every row is sent), in the same repeat as the plain run (plain, filtered, transformed in even repeats; the reverse in odd ones)`,
          transformed: `the same workflow with the transform ${JSON.stringify(TRANSFORM.patch)} (each payload parsed, patched with rfc6902 and serialised in the activity), in the same repeat as the plain run`,
          seeds: `sequential POST /replay/:id?target_topic on ${SEEDS_SAMPLE} ids (the seeds' way), extrapolated to ${events}`,
          cold: 'after the runs above: every row archived as one gzip NDJSON segment in a local directory (verified) and deleted from the journal, then the same client.workflow.execute(rangeReplayWorkflow) over the same range, which reads the archive (planning counts it once, then streams it); published count and topic growth checked',
        },
        archiveSeconds,
        eventsPerSecond: { workflow, filtered, transformed, rawLoop: rawLoopRate, rawLoopPlain, seeds, cold },
        extrapolatedSeedsSeconds: round(events / seeds.median),
        ratios,
        targets,
      });
      printTargets('range-replay', targets);
      console.log(`[range-replay] wrote ${file}`);
    });
  } finally {
    await deleteTopics(kafka, [target]);
    await fs.rm(archiveDir, { recursive: true, force: true });
  }
}

/** A target met when `actual` is at least `min` (a ratio unless told how to print the bound). */
function atLeast(name: string, actual: number, min: number, target = `>= ${min.toFixed(2)}`): Target {
  return { name, target, actual, met: actual >= min };
}

/** The lean loop: read a keyset page, turn it into replay messages, send it in one call, until a short page. */
async function rawLoop(
  pool: Pool,
  producer: Producer,
  config: Config,
  filter: RangeFilter,
  target: string,
  replayId: string,
  expected: number,
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
  if (sent !== expected) throw new Error(`raw loop sent ${sent} of ${expected}`);
  return (performance.now() - t0) / 1000;
}

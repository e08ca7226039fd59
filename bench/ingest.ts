import pg from 'pg';
import { createKafka } from '../shared/kafka';
import { createLogger } from '../shared/logger';
import { benchConfig, machine, uniqueSuffix, waitUntil } from './support/env';
import { withDatabase } from './support/database';
import { benchTopics, createTopics, deleteTopics, groupWatcher, makeEvents, produceAll } from './support/kafka';
import { sampleRss, spawnCli, stopChild } from './support/process';
import { printTargets, writeResult, type Target } from './support/results';
import { copyRows, naiveSink, rawConsume, run, type Run } from './support/sinks';
import { ratio, summarize } from './support/stats';
import type { BenchOptions } from './options';

const NAIVE_MAX_EVENTS = 20_000;
const NAIVE_MAX_MS = 60_000;

/**
 * Ingest throughput: N events produced beforehand to two fresh 3-partition topics; the project's sink (the compiled
 * `ingest` command, a child process) against the seeds' naive sink and the two limits (Kafka alone, Postgres COPY
 * alone), each repeat in a fresh database and consumer group.
 */
export async function ingestBench({ events: count = 200_000, repeat }: BenchOptions) {
  const started = machine();
  const config = benchConfig();
  const kafka = createKafka(config.kafka.brokers, 'crm-bench-ingest', createLogger('silent'));
  const suffix = uniqueSuffix();
  const topics = benchTopics(suffix);
  const topicList = [topics.leads, topics.jobs];
  await createTopics(kafka, topicList, 3);
  const samples: {
    project: Run[];
    naive: Run[];
    rawConsume: Run[];
    copy: Run[];
    rss: { peakRssMb: number; vmHwmMb: number | null }[];
    wallSeconds: number[];
  } = { project: [], naive: [], rawConsume: [], copy: [], rss: [], wallSeconds: [] };
  try {
    const events = makeEvents(count, topics, 50);
    const bytes = events.map((e) => Buffer.byteLength(e.value));
    const minBytes = bytes.reduce((a, b) => Math.min(a, b));
    const maxBytes = bytes.reduce((a, b) => Math.max(a, b));
    const producer = kafka.producer();
    await producer.connect();
    const produceBegan = Date.now();
    await produceAll(producer, events);
    const produceSeconds = (Date.now() - produceBegan) / 1000;
    await producer.disconnect();
    console.log(`[ingest] produced ${count} events (${minBytes}-${maxBytes} bytes) in ${produceSeconds} s`);

    for (let r = 0; r < repeat; r++) {
      const project = await withDatabase(config.databaseUrl, 'ingest_project', (db) =>
        projectSink(kafka, db.databaseUrl, topicList, `bench-project-${suffix}-${r}`, count),
      );
      samples.project.push(project.run);
      samples.rss.push(project.rss);
      samples.wallSeconds.push(project.wallSeconds);
      console.log(
        `[ingest] #${r + 1} project ${project.run.eventsPerSecond} ev/s, wall ${project.wallSeconds} s, RSS peak ${project.rss.vmHwmMb} MB`,
      );

      const naive = await withDatabase(config.databaseUrl, 'ingest_naive', (db) =>
        naiveSink(
          kafka,
          db.databaseUrl,
          topicList,
          `bench-naive-${suffix}-${r}`,
          Math.min(count, NAIVE_MAX_EVENTS),
          NAIVE_MAX_MS,
        ),
      );
      samples.naive.push(naive);
      console.log(`[ingest] #${r + 1} naive ${naive.eventsPerSecond} ev/s (${naive.events} events, ${naive.capped})`);

      const raw = await rawConsume(kafka, topicList, `bench-raw-${suffix}-${r}`, count, 300_000);
      samples.rawConsume.push(raw);
      const copy = await withDatabase(config.databaseUrl, 'ingest_copy', (db) => copyRows(db.databaseUrl, events));
      samples.copy.push(copy);
      console.log(
        `[ingest] #${r + 1} limits: raw consume ${raw.eventsPerSecond} ev/s, COPY ${copy.eventsPerSecond} ev/s`,
      );
    }

    const rate = (runs: Run[]) => summarize(runs.map((x) => x.eventsPerSecond));
    const project = rate(samples.project);
    const naive = rate(samples.naive);
    const raw = rate(samples.rawConsume);
    const copy = rate(samples.copy);
    const lowerLimit = Math.min(raw.median, copy.median);
    const rss = summarize(samples.rss.map((s) => s.vmHwmMb ?? s.peakRssMb));
    const ratios = {
      projectOverNaive: ratio(project.median, naive.median),
      projectOverLowerLimit: ratio(project.median, lowerLimit),
      projectOverRawConsume: ratio(project.median, raw.median),
      projectOverCopy: ratio(project.median, copy.median),
    };
    const targets: Target[] = [
      { name: 'project events/s', target: '>= 15000', actual: project.median, met: project.median >= 15_000 },
      {
        name: 'project / lower limit',
        target: '>= 0.70',
        actual: ratios.projectOverLowerLimit,
        met: ratios.projectOverLowerLimit >= 0.7,
      },
      { name: 'project / naive', target: '>= 10', actual: ratios.projectOverNaive, met: ratios.projectOverNaive >= 10 },
      { name: 'sink peak RSS MB (VmHWM)', target: '<= 250', actual: rss.max, met: rss.max <= 250 },
    ];
    const file = writeResult('ingest', started, {
      parameters: {
        events: count,
        repeat,
        partitionsPerTopic: 3,
        topics: 2,
        tenants: 50,
        payloadBytes: { min: minBytes, max: maxBytes, mean: Math.round(bytes.reduce((a, b) => a + b, 0) / count) },
        produceSeconds,
        naiveCap: { maxEvents: NAIVE_MAX_EVENTS, maxSeconds: NAIVE_MAX_MS / 1000 },
      },
      method: {
        project:
          'compiled `node dist/cli/main.js ingest` as a child process (LOG_LEVEL=warn, METRICS_PORT=0, fresh database and group); eventsPerSecond = N / (committed offsets reach the high watermarks − received_at of the first journaled row); wallSeconds include process start and group join',
        naive:
          'in the benchmark: kafkajs eachMessage, one INSERT (autocommit transaction) and one commitOffsets per message; measured on the first events only (cap above)',
        rawConsume: 'kafkajs eachBatch counting messages, no database (Kafka limit)',
        copy: 'pg-copy-streams COPY FROM STDIN of the same rows into a migrated journal with all indexes, no Kafka (Postgres limit)',
        rss: 'VmHWM of the ingest child from /proc/<pid>/status, also VmRSS sampled every 100 ms',
      },
      eventsPerSecond: { project, naive, rawConsume: raw, copy },
      lowerLimit,
      ratios,
      peakRssMb: rss,
      wallSeconds: summarize(samples.wallSeconds),
      raw: samples,
      targets,
    });
    printTargets('ingest', targets);
    console.log(`[ingest] wrote ${file}`);
  } finally {
    await deleteTopics(kafka, topicList);
  }
}

/** Runs the compiled ingest command until its group has committed every record; returns rate, wall time and RSS. */
async function projectSink(
  kafka: ReturnType<typeof createKafka>,
  databaseUrl: string,
  topics: string[],
  groupId: string,
  count: number,
) {
  const spawned = Date.now();
  const child = spawnCli('ingest', {
    DATABASE_URL: databaseUrl,
    KAFKA_TOPICS: topics.join(','),
    KAFKA_GROUP_ID: groupId,
    KAFKA_FROM_BEGINNING: 'true',
  });
  const rss = sampleRss(child.pid);
  const watcher = await groupWatcher(kafka, groupId, topics);
  let finished = 0;
  try {
    await waitUntil(
      async () => {
        if (child.exitCode !== null) throw new Error(`ingest exited with code ${child.exitCode}`);
        return (await watcher.lag()) === 0;
      },
      `${count} events committed by ${groupId}`,
      120_000 + count,
      100,
    );
    finished = Date.now();
  } finally {
    await watcher.close();
  }
  const memory = rss.stop();
  await stopChild(child);
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  const { rows } = await db.query<{ n: number; first: Date }>(
    'SELECT count(*)::int AS n, min(received_at) AS first FROM event_journal',
  );
  await db.end();
  if (rows[0].n !== count) throw new Error(`project sink journaled ${rows[0].n} of ${count} events`);
  return { run: run(count, finished - rows[0].first.getTime()), wallSeconds: (finished - spawned) / 1000, rss: memory };
}

/**
 * The chaos soak (`npm run soak -- --minutes N`): the service as three real processes on a stack instance of its own,
 * steady and hostile traffic, replays and DLQ retries through the API, random faults with recovery; then a bounded
 * drain and the invariant checks of docs/integrity.md. Writes bench/results/soak-<date>-<N>m.json; exits 1 on any
 * violation, 2 when the soak itself could not run to the end.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Kafka, logLevel, type Admin } from 'kafkajs';
import pg from 'pg';
import {
  checkAccounting,
  checkIngestTotals,
  checkRecords,
  checkReplayFaults,
  checkReplays,
  stuckPartitions,
  type CompletedReplay,
  type TopicDeletion,
  type Violation,
} from './check';
import { collectDatabase, ingestRowCounts, partitionOffsets } from './collect';
import { FAULTS, injectFault, type FaultRecord } from './faults';
import { freshInstance, runCli, serviceEnv, Services, SOAK_COMPONENTS, stack, type InstanceOptions } from './instance';
import { IngestScraper } from './metrics';
import { SOAK_TOPICS, seededRandom, type ForgeTarget } from './records';
import { Gate, JOURNALED_KINDS, Operator, sleep, TrafficSource, within } from './traffic';

/** A transaction's rows carry its start time; this much before a scrape, a batch may still have been uncommitted. */
const TRANSACTION_SLACK_MS = 30_000;

function args() {
  const argv = process.argv.slice(2);
  const opt = (name: string, fallback: number) => {
    const i = argv.indexOf(`--${name}`);
    const v = i >= 0 ? Number(argv[i + 1]) : fallback;
    if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} must be a positive number`);
    return v;
  };
  return { minutes: opt('minutes', 3), rate: opt('rate', 25), seed: opt('seed', Date.now() % 2 ** 31) };
}

const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
/** Stops what a failed run left behind (services, its own stack instance); set once they exist. */
let abort: () => Promise<void> = async () => undefined;

const log = (msg: string) => process.stderr.write(`[soak ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

/** Polls until check() is true or ms passed; returns whether it became true. */
async function until(check: () => Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return true;
    await sleep(1000);
  }
  return false;
}

async function main(): Promise<number> {
  const { minutes, rate, seed } = args();
  const o: InstanceOptions = {
    stackDir: process.env.SOAK_STACK_DIR ?? '/tmp/soakstack',
    pgPort: env('SOAK_PG_PORT', 5546),
    kafkaPort: env('SOAK_KAFKA_PORT', 9192),
    temporalPort: env('SOAK_TEMPORAL_PORT', 7333),
    apiPort: env('SOAK_API_PORT', 9206),
    metricsPort: env('SOAK_METRICS_PORT', 9205),
  };
  const rand = seededRandom(seed);
  const apiUrl = `http://127.0.0.1:${o.apiPort}`;
  const started = new Date();
  // The global deadline: the run, plus setup and drain; past it the soak reports what it has and exits 2.
  const hardStop = setTimeout(
    () => {
      log(`global deadline passed (${minutes} min + 12 min); giving up`);
      process.exit(2);
    },
    (minutes * 60 + 720) * 1000,
  );
  hardStop.unref();

  log(
    `seed ${seed}; fresh stack instance in ${o.stackDir} (postgres :${o.pgPort}, kafka :${o.kafkaPort}, temporal :${o.temporalPort})`,
  );
  await freshInstance(o);
  await runCli(o, 'migrate');
  const services = new Services(o);
  abort = async () => {
    await services.stopAll(5000);
    await stack(o, ['down']);
  };
  for (const s of ['ingest', 'worker', 'api'] as const) services.start(s);
  if (!(await until(async () => (await fetch(`${apiUrl}/healthz`)).ok, 90_000)))
    throw new Error('API never answered /healthz');

  const kafka = new Kafka({
    clientId: 'soak',
    brokers: [`127.0.0.1:${o.kafkaPort}`],
    logLevel: logLevel.NOTHING,
    retry: { retries: 2 },
  });
  const producer = kafka.producer({ allowAutoTopicCreation: false, retry: { retries: 2 } });
  await producer.connect();
  let admin: Admin | undefined;
  const getAdmin = async () => {
    if (!admin) {
      admin = kafka.admin();
      await within(admin.connect(), 30_000, 'admin connect');
    }
    return admin;
  };
  const db = new pg.Pool({
    connectionString: serviceEnv(o).DATABASE_URL,
    max: 2,
    connectionTimeoutMillis: 3000,
    statement_timeout: 10_000,
  });
  db.on('error', () => undefined);
  const ids = async (n: number, topic?: string): Promise<number[]> =>
    (
      await db
        .query<{ id: string }>(
          'SELECT id FROM event_journal WHERE replay_count = 0 AND ($2::text IS NULL OR topic = $2) ORDER BY random() LIMIT $1',
          [n, topic ?? null],
        )
        .catch(() => ({ rows: [] }))
    ).rows.map((r) => Number(r.id));
  let forge: ForgeTarget | undefined;

  const operator = new Operator(apiUrl);
  const gate = new Gate();
  const groupId = 'crm-events-sink';
  // The ingest process's counters die with it: scraped every 5 s and just before each planned kill.
  const scraper = new IngestScraper(`http://127.0.0.1:${o.metricsPort}/metrics`, services);
  scraper.start(5000);
  const traffic = new TrafficSource(producer, rand, 0.15, () => forge);
  const faults: FaultRecord[] = [];
  const endAt = Date.now() + minutes * 60_000;
  const running = () => Date.now() < endAt;

  const operation = async () => {
    const pick = rand();
    if (pick < 0.35) {
      const [id] = await ids(1);
      if (id) await operator.call('single', 'POST', `/replay/${id}`, undefined, [id]);
    } else if (pick < 0.6) {
      const batch = await ids(5);
      if (batch.length) await operator.call('batch', 'POST', '/replay/batch', { ids: batch }, batch);
    } else if (pick < 0.8) {
      const end = new Date(Date.now() - 5000);
      const start = new Date(end.getTime() - 10_000);
      await operator.call('range', 'POST', '/replay/range', {
        start: start.toISOString(),
        end: end.toISOString(),
        max_events_per_second: 200,
      });
    } else {
      const { rows } = await db
        .query<{ id: string }>("SELECT id FROM event_dlq WHERE status <> 'resolved' ORDER BY random() LIMIT 1")
        .catch(() => ({ rows: [] as { id: string }[] }));
      if (rows[0]) await operator.call('dlq_retry', 'POST', `/dlq/${rows[0].id}/retry`);
    }
    const { rows } = await db
      .query<{ r: string; e: string }>(
        "SELECT payload->>'_replay_id' AS r, payload->>'_replayed_from_event_id' AS e FROM event_journal WHERE replay_count > 0 ORDER BY id DESC LIMIT 1",
      )
      .catch(() => ({ rows: [] as { r: string; e: string }[] }));
    if (rows[0]?.r) forge = { replayId: rows[0].r, eventId: Number(rows[0].e) };
  };
  const operations = (async () => {
    while (running()) {
      await sleep(2000 + rand() * 2000);
      if (running()) await gate.run(operation);
    }
  })();

  const order = [...FAULTS].sort(() => rand() - 0.5);
  const gap = Math.max(12_000, Math.min(40_000, ((minutes * 60 - 30) * 1000) / (FAULTS.length + 1)));
  const chaos = (async () => {
    for (let i = 0; running(); i++) {
      await sleep(gap * (0.6 + rand() * 0.8));
      if (!running()) break;
      const kind = order[i % order.length];
      log(`fault: ${kind}`);
      const f = await injectFault(kind, {
        instance: o,
        services,
        admin: getAdmin,
        operator,
        rand,
        pickEventId: async (topic) => (await ids(1, topic))[0],
        beforeKill: async (service) => {
          if (service === 'ingest') await scraper.scrape();
        },
        gate,
        groupId,
      });
      if (!f.ok) log(`fault ${kind} did not recover cleanly: ${f.error}`);
      if (f.replaysSettled === false)
        log(`${f.target} deleted with replay records possibly unconsumed: ingest had not caught up in time`);
      faults.push(f);
    }
  })();

  log(`traffic at ${rate}/s for ${minutes} min, 15% hostile; a fault every ~${Math.round(gap / 1000)} s`);
  await Promise.all([traffic.run(rate, () => !running()), operations, chaos]);
  log(`traffic stopped: ${traffic.produced.length} acknowledged, ${traffic.uncertain} sends failed; draining`);

  // Recovery of everything, then a bounded drain: replays finished, every partition consumed.
  await stack(o, ['up', ...SOAK_COMPONENTS]).catch((err) => log(`stack up after the run: ${(err as Error).message}`));
  const workflowIds = [
    ...new Set(
      operator.operations
        .filter((op) => op.workflowId && op.kind !== 'missing_topic' && op.kind !== 'target_deleted')
        .map((op) => op.workflowId!),
    ),
  ];
  const statuses = new Map<string, Awaited<ReturnType<Operator['replayStatus']>>>();
  const replaysDone = await until(async () => {
    for (const id of workflowIds)
      if (statuses.get(id)?.workflow_status !== 'COMPLETED') statuses.set(id, await operator.replayStatus(id));
    return workflowIds.every(
      (id) => statuses.get(id)?.workflow_status && statuses.get(id)?.workflow_status !== 'RUNNING',
    );
  }, 150_000);
  let offsets = await partitionOffsets(await getAdmin(), groupId, SOAK_TOPICS).catch(() => []);
  await until(async () => {
    offsets = await partitionOffsets(await getAdmin(), groupId, SOAK_TOPICS);
    return offsets.length > 0 && stuckPartitions(offsets).length === 0;
  }, 120_000);
  scraper.stop();
  const finalScrape = await scraper.scrape();
  const finalPid = services.pidOf('ingest');
  const metricsText = (finalPid !== undefined && scraper.last.get(finalPid)?.text) || '';

  const collected = await collectDatabase(serviceEnv(o).DATABASE_URL, traffic.produced);
  const deletions = faults.map((f) => f.deletion).filter((d): d is TopicDeletion => d !== undefined);
  const records = checkRecords(collected.produced, collected.journal, collected.dlq, deletions);
  const processes = scraper.processes();
  const windows = processes.map((p): [number, number] => [
    (p.lastScrapeAt ?? p.startedAt) - TRANSACTION_SLACK_MS,
    p.endedAt ?? Date.now(),
  ]);
  const ingestRows = await ingestRowCounts(serviceEnv(o).DATABASE_URL, windows);
  const ingestTotals = checkIngestTotals(processes, ingestRows);
  const replayFaults = checkReplayFaults(faults);
  const completed: CompletedReplay[] = [];
  for (const op of operator.operations) {
    const st = op.workflowId ? statuses.get(op.workflowId) : undefined;
    if (!op.workflowId || st?.workflow_status !== 'COMPLETED' || !JOURNALED_KINDS.has(op.kind)) continue;
    if (op.kind === 'range') completed.push({ workflowId: op.workflowId, published: st.result?.published });
    else {
      const skip = new Set([
        ...(st.result?.unknown_ids ?? []),
        ...(st.result?.refused ?? []).map((r) => r.event_id ?? r.id),
      ]);
      completed.push({ workflowId: op.workflowId, eventIds: (op.eventIds ?? []).filter((id) => !skip.has(id)) });
    }
  }
  const replays = checkReplays(collected.replays, records.originalIds, completed);
  const accounting = checkAccounting(metricsText);
  const violations: Violation[] = [
    ...records.violations,
    ...replays.violations,
    ...stuckPartitions(offsets),
    ...scraper.violations,
    ...ingestTotals.violations,
    ...replayFaults.violations,
    // A service process that exits on its own (not killed by a fault, not stopped at the end) is a crash: bad input or
    // a dependency's outage must never end a process.
    ...services.events
      .filter((e) => e.event === 'exited')
      .map((e) => ({ rule: 'service_exited', detail: `${e.service} exited unplanned at ${e.at} (${e.detail ?? ''})` })),
    ...(finalScrape
      ? []
      : [{ rule: 'metrics_unavailable', detail: 'the ingest process alive at the end could not be scraped' }]),
    ...operator.operations
      .filter((op) => op.kind === 'missing_topic' && typeof op.status === 'number' && op.status < 300)
      .map((op) => ({ rule: 'replay_to_missing_topic_accepted', detail: `${op.request} answered ${op.status}` })),
    ...(replaysDone
      ? []
      : [
          {
            rule: 'replay_not_finished',
            detail: `replays still running after the drain: ${workflowIds.filter((id) => statuses.get(id)?.workflow_status === 'RUNNING').join(', ')}`,
          },
        ]),
  ];

  const byRule: Record<string, number> = {};
  for (const v of violations) byRule[v.rule] = (byRule[v.rule] ?? 0) + 1;
  const report = {
    started: started.toISOString(),
    finished: new Date().toISOString(),
    minutes,
    ratePerSecond: rate,
    seed,
    pass: violations.length === 0,
    counts: {
      produced: records.produced,
      sendsFailed: traffic.uncertain,
      journaled: records.journaled,
      deadLettered: records.deadLettered,
      resolvedFromDlq: records.resolvedFromDlq,
      redelivered: null as number | null,
      lost: records.lost,
      deletedWithTopic: records.deletedWithTopic,
      duplicated: records.duplicated,
      altered: records.altered,
      unaccountedRows: records.unaccountedRows,
      stuckPartitions: stuckPartitions(offsets).length,
      replayRows: replays.replayRows,
      replaysDuplicated: replays.duplicated,
      replaysAltered: replays.altered,
      replaysIncomplete: replays.incomplete,
      midReplayTopicDeletes: replayFaults.midReplayDeletes,
      midReplayTopicDeletesInconclusive: replayFaults.inconclusive,
      replaysAfterRecreate: replayFaults.replaysAfterRecreate,
    },
    deletedWithTopic: records.deletedWithTopicDetail,
    faultsByKind: Object.fromEntries(
      FAULTS.map((k) => [k, faults.filter((f) => f.kind === k).length] as const).filter(([, n]) => n > 0),
    ),
    hostileKinds: Object.fromEntries(
      Object.entries(
        traffic.produced.reduce<Record<string, number>>((m, p) => ({ ...m, [p.kind]: (m[p.kind] ?? 0) + 1 }), {}),
      ).sort(),
    ),
    schema: collected.schema,
    metrics: {
      accountingExposed: accounting.present,
      scrapes: scraper.scrapes,
      scrapeFailures: scraper.failures,
      ingestProcesses: processes.map((p) => ({
        ...p,
        startedAt: new Date(p.startedAt).toISOString(),
        endedAt: p.endedAt === undefined ? undefined : new Date(p.endedAt).toISOString(),
        lastScrapeAt: p.lastScrapeAt === undefined ? undefined : new Date(p.lastScrapeAt).toISOString(),
      })),
      summedOverProcesses: ingestTotals.sum,
      rowsWrittenByIngest: ingestRows,
      uncountedRows: ingestTotals.uncounted,
    },
    faults,
    serviceEvents: services.events,
    replays: operator.operations.map((op) => ({
      ...op,
      finalStatus: op.workflowId ? statuses.get(op.workflowId)?.workflow_status : undefined,
    })),
    partitions: offsets,
    violationsByRule: byRule,
    violations: violations.slice(0, 200),
  };
  report.counts.redelivered = accounting.present ? ingestTotals.sum.redelivered : null;

  const file = path.resolve(
    __dirname,
    '../../../bench/results',
    `soak-${started.toISOString().slice(0, 10)}-${minutes}m.json`,
  );
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(report, null, 2) + '\n');

  await producer.disconnect().catch(() => undefined);
  await admin?.disconnect().catch(() => undefined);
  await db.end().catch(() => undefined);
  await services.stopAll();
  await stack(o, ['down']).catch(() => undefined);

  log(`report: ${path.relative(process.cwd(), file)}; service logs in ${path.join(o.stackDir, 'logs')}`);
  const restarts: Record<string, number> = {};
  for (const p of processes)
    for (const [reason, n] of Object.entries(p.consumerRestarts ?? {})) restarts[reason] = (restarts[reason] ?? 0) + n;
  log(`ingest processes ${processes.length}; Kafka consumer restarts by reason ${JSON.stringify(restarts)}`);
  log(
    `produced ${records.produced}: journaled ${records.journaled}, dead-lettered ${records.deadLettered}, deleted with topic ${records.deletedWithTopic}, lost ${records.lost}, altered ${records.altered}, duplicated ${records.duplicated}; replay rows ${replays.replayRows}; faults ${faults.length}`,
  );
  if (violations.length === 0) {
    log('PASS: no violation');
    return 0;
  }
  log(`FAIL: ${violations.length} violation(s): ${JSON.stringify(byRule)}. First ones:`);
  for (const v of violations.slice(0, 15)) log(`  ${v.rule}: ${v.detail}`);
  return 1;
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    log(`soak could not run: ${err.stack ?? err.message}`);
    void within(abort(), 60_000, 'cleanup')
      .catch(() => undefined)
      .finally(() => process.exit(2));
  },
);

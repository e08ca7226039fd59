import { performance } from 'node:perf_hooks';
import autocannon from 'autocannon';
import { listEvents, type EventQuery } from '../repository/event-journal';
import { createPool, type Pool } from '../shared/db';
import { createLogger } from '../shared/logger';
import { withDatabase } from './support/database';
import { benchConfig, machine, waitUntil } from './support/env';
import { seedSeries } from './support/journal';
import { printTargets, writeResult, type Target } from './support/results';
import { freePort } from './support/ports';
import { spawnCli, stopChild } from './support/process';
import { percentiles, round, summarize } from './support/stats';
import type { BenchOptions } from './options';

const CONNECTIONS = 10;
const DURATION_S = 10;
const TOPICS = ['apexflow.leads.created', 'apexflow.jobs.created'];
const TENANTS = 50;
const SIZES = (process.env.BENCH_API_ROWS ?? '1000000,5000000').split(',').map(Number);

/** The two read paths under test, as HTTP paths and as the listEvents query the route makes. */
const QUERIES: { name: string; path: string; query: EventQuery }[] = [
  { name: 'latest', path: '/events/latest', query: { limit: 20 } },
  {
    name: 'filtered',
    path: `/events?tenant_id=tenant-007&topic=${TOPICS[1]}`,
    query: { tenantId: 'tenant-007', topic: TOPICS[1], limit: 50 },
  },
  // A filter that matches nothing: walking the id index newest-first would read the whole table, unless the planner
  // goes through the tenant index instead (the plan shows which).
  {
    name: 'filteredNoMatch',
    path: `/events?tenant_id=tenant-999&topic=${TOPICS[1]}`,
    query: { tenantId: 'tenant-999', topic: TOPICS[1], limit: 50 },
  },
];

/**
 * API reads under load: GET /events/latest and GET /events?tenant_id&topic with autocannon against the real API on a
 * journal of 1M rows, then 5M (grown in place), against the same SQL run straight on a pg pool (the database limit);
 * plus EXPLAIN (ANALYZE, BUFFERS) of each query at each size, with its plan node types.
 */
export async function apiBench({ repeat }: BenchOptions) {
  const started = machine();
  const base = benchConfig();
  const log = createLogger('silent');
  const sizes: Record<string, unknown>[] = [];
  const targets: Target[] = [];
  await withDatabase(base.databaseUrl, 'api', async (db) => {
    const config = benchConfig({ DATABASE_URL: db.databaseUrl });
    const pool = createPool(config.databaseUrl, config.databasePoolSize, log);
    const api = await startApiProcess(db.databaseUrl);
    try {
      let seeded = 0;
      for (const rows of SIZES) {
        const t0 = performance.now();
        await seedSeries(pool, {
          count: rows - seeded,
          topics: TOPICS,
          tenants: TENANTS,
          from: new Date('2024-01-01T00:00:00Z'),
          stepMs: 100,
          offset: seeded,
        });
        await pool.query('VACUUM ANALYZE event_journal');
        const seedSeconds = round((performance.now() - t0) / 1000, 1);
        seeded = rows;
        console.log(`[api] journal at ${rows} rows (seeded in ${seedSeconds} s)`);
        const perQuery: Record<string, unknown> = {};
        for (const q of QUERIES) {
          const plan = await explain(pool, q.query);
          const http = [];
          const sql = [];
          for (let r = 0; r < repeat; r++) {
            http.push(await load(`${api.url}${q.path}`));
            sql.push(await sqlLoad(pool, q.query));
          }
          const summary = {
            http: {
              requestsPerSecond: summarize(http.map((h) => h.requestsPerSecond)),
              p99Ms: summarize(http.map((h) => h.p99Ms)),
              p50Ms: summarize(http.map((h) => h.p50Ms)),
            },
            sqlOnly: {
              queriesPerSecond: summarize(sql.map((s) => s.queriesPerSecond)),
              p99Ms: summarize(sql.map((s) => s.p99Ms)),
            },
          };
          perQuery[q.name] = { path: q.path, plan, ...summary, raw: { http, sql } };
          console.log(
            `[api] ${rows} rows ${q.path}: ${summary.http.requestsPerSecond.median} req/s, p99 ${summary.http.p99Ms.median} ms (SQL alone ${summary.sqlOnly.queriesPerSecond.median} q/s, p99 ${summary.sqlOnly.p99Ms.median} ms); plan ${plan.nodeTypes.join(' > ')}`,
          );
          const last = rows === SIZES[SIZES.length - 1];
          if (last) {
            targets.push({
              name: `${q.path} p99 ms at ${rows} rows (median of repeats)`,
              target: '<= 10',
              actual: summary.http.p99Ms.median,
              met: summary.http.p99Ms.median <= 10,
            });
          }
          targets.push({
            name: `${q.path} at ${rows} rows: no Seq Scan on event_journal`,
            target: 'index scans only',
            actual: plan.nodeTypes.join(' > '),
            met: !plan.seqScanOnJournal,
          });
        }
        sizes.push({ rows, seedSeconds, queries: perQuery });
      }
    } finally {
      await stopChild(api.child);
      await pool.end();
    }
  });
  const file = writeResult('api', started, {
    parameters: {
      connections: CONNECTIONS,
      durationSeconds: DURATION_S,
      repeat,
      sizes: SIZES,
      tenants: TENANTS,
      topics: TOPICS,
    },
    method: {
      http: 'autocannon (in the benchmark process) against the compiled `node dist/cli/main.js api` as a child process on 127.0.0.1 (auth off, LOG_LEVEL=warn, default pool of 10)',
      sqlOnly: `the same listEvents query on a pg pool, ${CONNECTIONS} concurrent loops for ${DURATION_S} s (the database limit, no HTTP)`,
      seeding:
        'one INSERT ... SELECT generate_series per size (the larger size grows the same table), then VACUUM ANALYZE',
      explain: 'EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) of the exact SQL and parameters listEvents sends',
    },
    sizes,
    targets,
  });
  printTargets('api', targets);
  console.log(`[api] wrote ${file}`);
}

async function load(url: string) {
  const result = await autocannon({ url, connections: CONNECTIONS, duration: DURATION_S });
  if (result.non2xx > 0 || result.errors > 0)
    throw new Error(`${url}: ${result.non2xx} non-2xx, ${result.errors} errors under load`);
  return {
    requestsPerSecond: round(result.requests.average),
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    total: result.requests.total,
  };
}

/** The route's query straight on the pool: CONNECTIONS loops for DURATION_S seconds. */
async function sqlLoad(pool: Pool, query: EventQuery) {
  const latencies: number[] = [];
  const until = performance.now() + DURATION_S * 1000;
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (performance.now() < until) {
        const t0 = performance.now();
        await listEvents(pool, query);
        latencies.push(performance.now() - t0);
      }
    }),
  );
  return { queriesPerSecond: round(latencies.length / DURATION_S), p99Ms: percentiles(latencies).p99 };
}

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  Plans?: PlanNode[];
}

/** EXPLAIN (ANALYZE, BUFFERS) of the exact statement listEvents sends, captured through a recording Queryable. */
async function explain(pool: Pool, query: EventQuery) {
  let captured: { text: string; values: unknown[] } | undefined;
  await listEvents(
    {
      query: async (text: string, values?: unknown[]) => ((captured = { text, values: values ?? [] }), { rows: [] }),
    } as unknown as Pool,
    query,
  );
  const { rows } = await pool.query<{ 'QUERY PLAN': [{ Plan: PlanNode; 'Execution Time': number }] }>(
    `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${captured!.text}`,
    captured!.values,
  );
  const [{ Plan, 'Execution Time': executionMs }] = rows[0]['QUERY PLAN'];
  const nodes: PlanNode[] = [];
  const walk = (node: PlanNode) => {
    nodes.push(node);
    node.Plans?.forEach(walk);
  };
  walk(Plan);
  return {
    sql: captured!.text.replace(/\s+/g, ' ').trim(),
    nodeTypes: nodes.map((n) => (n['Index Name'] ? `${n['Node Type']} (${n['Index Name']})` : n['Node Type'])),
    seqScanOnJournal: nodes.some((n) => n['Node Type'] === 'Seq Scan' && n['Relation Name'] === 'event_journal'),
    executionMs: round(executionMs, 3),
    plan: Plan,
  };
}

/** The compiled `api` command as a child process on a free local port; resolves once it answers. */
async function startApiProcess(databaseUrl: string) {
  const port = await freePort();
  const child = spawnCli('api', { DATABASE_URL: databaseUrl, API_HOST: '127.0.0.1', API_PORT: String(port) });
  const url = `http://127.0.0.1:${port}`;
  await waitUntil(
    async () => {
      if (child.exitCode !== null) throw new Error(`api exited with code ${child.exitCode}`);
      return fetch(`${url}/events/latest?limit=1`).then(
        (res) => res.ok,
        () => false,
      );
    },
    'the API to answer',
    30_000,
  );
  return { child, url };
}

import { performance } from 'node:perf_hooks';
import { countRange, listEvents } from '../repository/event-journal';
import type { Queryable } from '../repository/queryable';
import { createPool } from '../shared/db';
import { createLogger } from '../shared/logger';
import { withDatabase } from './support/database';
import { benchConfig, machine } from './support/env';
import { seedSeries } from './support/journal';
import { printTargets, writeResult, type Target } from './support/results';
import { round, summarize } from './support/stats';
import type { BenchOptions } from './options';

const TOPICS = ['apexflow.leads.created', 'apexflow.jobs.created'];
/** 1 row in 100 comes from a trade show: a selective equality, the case an index could serve. */
const SELECTIVE = '$.source == "trade-show"';
const COMBINED = '$.source == "trade-show" && $.lead_id > 200';
const RANGE_ONLY = '$.lead_id > 200';

interface PlanNode {
  'Node Type': string;
  'Index Name'?: string;
  Plans?: PlanNode[];
}

function nodeTypes(plan: PlanNode): string[] {
  const found = new Set<string>();
  const walk = (node: PlanNode) => {
    if (/Scan/.test(node['Node Type']))
      found.add(node['Index Name'] ? `${node['Node Type']} (${node['Index Name']})` : node['Node Type']);
    node.Plans?.forEach(walk);
  };
  walk(plan);
  return [...found];
}

/** The SQL and values a repository function sends, captured without running it. */
async function captured(call: (q: Queryable) => Promise<unknown>) {
  let sent: { text: string; values: unknown[] } | undefined;
  await call({
    query: async (text: string, values: unknown[] = []) => {
      sent = { text, values };
      return { rows: [], rowCount: 0, command: '', oid: 0, fields: [] } as never;
    },
  });
  return sent!;
}

/**
 * Payload filters (issue 13, point 3): the queries exactly as the repository sends them — a range count (dry run,
 * plan), a range page and the first /events page — without a filter and with three filters, EXPLAIN (ANALYZE)d
 * without and then with a GIN jsonb_path_ops index on payload. Reports times as ratios to the unfiltered query of
 * the same run and the scans each plan uses.
 */
export async function payloadFilterBench({ events, repeat }: BenchOptions) {
  const started = machine();
  const rows = events ?? 200_000;
  const base = benchConfig();
  await withDatabase(base.databaseUrl, 'payload_filter', async (db) => {
    const pool = createPool(db.databaseUrl, 2, createLogger('silent'), 600_000, 'crm-events-sink-bench');
    try {
      const from = new Date(Date.now() - 86_400_000);
      for (let done = 0; done < rows; done += 100_000) {
        const count = Math.min(100_000, rows - done);
        await seedSeries(pool, { count, topics: TOPICS, tenants: 50, from, stepMs: 86_400_000 / rows, offset: done });
      }
      await pool.query(`UPDATE event_journal SET payload = payload || '{"source": "trade-show"}' WHERE id % 100 = 0`);
      await pool.query('ANALYZE event_journal');
      const { rows: ids } = await pool.query<{ hi: string }>('SELECT max(id) AS hi FROM event_journal');
      const range = { start: from.toISOString(), end: new Date().toISOString(), maxId: Number(ids[0].hi) };
      const queries = (payloadFilter?: string): Record<string, (q: Queryable) => Promise<unknown>> => ({
        'range count (dry run)': (q) => countRange(q, { ...range, payloadFilter }),
        'GET /events first page': (q) => listEvents(q, { payloadFilter, limit: 51 }),
      });
      const filters = { none: undefined, selective: SELECTIVE, combined: COMBINED, 'range only': RANGE_ONLY };
      const measureAll = async (index: string) => {
        const out: Record<string, unknown>[] = [];
        const baseline: Record<string, number> = {};
        for (const filter of Object.values(filters)) {
          for (const [name, call] of Object.entries(queries(filter))) {
            const { text, values } = await captured(call);
            const times: number[] = [];
            let plan: PlanNode | undefined;
            for (let i = 0; i < Math.max(3, repeat); i++) {
              const { rows: res } = await pool.query<{
                'QUERY PLAN': Array<{ Plan: PlanNode; 'Execution Time': number }>;
              }>(`EXPLAIN (ANALYZE, FORMAT JSON) ${text}`, values);
              plan = res[0]['QUERY PLAN'][0].Plan;
              times.push(res[0]['QUERY PLAN'][0]['Execution Time']);
            }
            const ms = summarize(times);
            if (filter === undefined) baseline[name] = ms.median;
            out.push({
              index,
              query: name,
              filter: filter ?? null,
              ms,
              ratioToUnfiltered: round(ms.median / Math.max(baseline[name], 0.001)),
              scans: nodeTypes(plan!),
            });
          }
        }
        return out;
      };
      const t0 = performance.now();
      const withoutIndex = await measureAll('none');
      await pool.query('CREATE INDEX bench_payload_path ON event_journal USING gin (payload jsonb_path_ops)');
      const indexSeconds = round((performance.now() - t0) / 1000);
      await pool.query('ANALYZE event_journal');
      const withIndex = await measureAll('gin jsonb_path_ops');
      for (const r of [...withoutIndex, ...withIndex]) {
        console.log(
          `[payload-filter] ${String(r.index).padEnd(18)} ${String(r.query).padEnd(22)} ${String(r.filter ?? '-').padEnd(45)} ` +
            `x${r.ratioToUnfiltered}  ${(r.scans as string[]).join(' + ')}`,
        );
      }
      const count = (label: string) =>
        withIndex.find((r) => r.query === 'range count (dry run)' && r.filter === label) as { scans: string[] };
      // Each partition gets its own copy of the index, named after the partition (…_payload_idx).
      const usesIndex = (label: string) =>
        count(label).scans.some((scan) => /^Bitmap Index Scan \(.*(payload_idx|bench_payload_path)\)$/.test(scan));
      const targets: Target[] = [
        {
          name: 'selective equality filter (dry-run count) served by the GIN jsonb_path_ops index',
          target: 'Bitmap Index Scan on the index',
          actual: count(SELECTIVE).scans.join(' + '),
          met: usesIndex(SELECTIVE),
        },
        {
          name: 'equality && range filter: the index serves the equality, Postgres rechecks the rest',
          target: 'Bitmap Index Scan on the index',
          actual: count(COMBINED).scans.join(' + '),
          met: usesIndex(COMBINED),
        },
      ];
      printTargets('payload-filter', targets);
      const file = writeResult('payload-filter', started, {
        targets,
        parameters: { rows, repeat: Math.max(3, repeat), selectiveShare: 0.01, indexSeconds },
        queries: [...withoutIndex, ...withIndex],
      });
      console.log(`[payload-filter] wrote ${file}`);
    } finally {
      await pool.end();
    }
  });
}

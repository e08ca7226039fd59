import { performance } from 'node:perf_hooks';
import { countRange, eventsAfter, getEvent, listEvents, rangePage, replaysOf } from '../repository/event-journal';
import { createJournalPartition, listJournalPartitions } from '../repository/journal-partitions';
import type { Queryable } from '../repository/queryable';
import { nextPeriod, partitionName } from '../lifecycle/periods';
import { createPool, withTransaction, type Pool } from '../shared/db';
import { createLogger } from '../shared/logger';
import { withDatabase } from './support/database';
import { benchConfig, machine } from './support/env';
import { seedSeries } from './support/journal';
import { printTargets, writeResult, type Target } from './support/results';
import { round, summarize } from './support/stats';
import type { BenchOptions } from './options';

const TOPICS = ['apexflow.leads.created', 'apexflow.jobs.created'];
const MONTHS = 12;
const YEAR_START = new Date(Date.UTC(2025, 11, 1));

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Subplans Removed'?: number;
  Plans?: PlanNode[];
}

/**
 * Scans of journal partitions in a plan (and how many the executor pruned at run time). A Seq Scan counts only on a
 * relation that holds rows: on an empty partition (the future ones, the default) it reads nothing.
 */
function scans(plan: PlanNode, rowsOf: Map<string, number>) {
  const relations = new Set<string>();
  const nodeTypes = new Set<string>();
  const seqScannedWithRows: string[] = [];
  let removed = 0;
  const walk = (node: PlanNode) => {
    removed += node['Subplans Removed'] ?? 0;
    const relation = node['Relation Name'];
    if (relation?.startsWith('event_journal') || relation === 'journal_flat') {
      relations.add(relation);
      nodeTypes.add(node['Node Type']);
      if (node['Node Type'] === 'Seq Scan' && (rowsOf.get(relation) ?? 0) > 0) seqScannedWithRows.push(relation);
    }
    node.Plans?.forEach(walk);
  };
  walk(plan);
  return {
    partitionsScanned: relations.size,
    subplansRemovedAtRuntime: removed,
    scanTypes: [...nodeTypes],
    seqScannedWithRows,
  };
}

/** A Queryable that records the SQL a repository function sends (and answers nothing). */
function recorder() {
  const calls: { text: string; values: unknown[] }[] = [];
  const db: Queryable = {
    query: async (text: string, values: unknown[] = []) => {
      calls.push({ text, values });
      return { rows: [], rowCount: 0, command: '', oid: 0, fields: [] } as never;
    },
  };
  return { db, calls };
}

/**
 * The journal's access paths on a year of monthly partitions (issue 12, point 1): each query exactly as the
 * repository sends it, EXPLAIN (ANALYZE)d on the partitioned journal and on a flat copy with the same rows and
 * indexes. Reports which partitions each plan touches (pruning), the scan types (index-bound or not), and the time
 * ratio partitioned / flat, in the same run.
 */
export async function partitionsBench({ events, repeat }: BenchOptions) {
  const started = machine();
  const rows = events ?? 1_000_000;
  const log = createLogger('silent');
  const base = benchConfig();
  await withDatabase(base.databaseUrl, 'partitions', async (db) => {
    const pool = createPool(db.databaseUrl, 4, log, 600_000, 'crm-events-sink-bench');
    try {
      await yearOfPartitions(pool);
      const t0 = performance.now();
      for (let done = 0; done < rows; done += 200_000) {
        await seedSeries(pool, {
          count: Math.min(200_000, rows - done),
          topics: TOPICS,
          tenants: 50,
          from: YEAR_START,
          stepMs: (365 * 86_400_000) / rows,
          offset: done,
        });
      }
      // A few replays with lineage, for the lineage lookup.
      await pool.query(
        `INSERT INTO event_journal (tenant_id, topic, payload, received_at, replay_count, replay_source)
         SELECT tenant_id, topic, payload || jsonb_build_object('_replayed_from_event_id', id, '_replay_id', 'r1'),
                received_at + interval '1 second', 1, 'bench'
           FROM event_journal WHERE id % 10000 = 0`,
      );
      await pool.query('CREATE TABLE journal_flat (LIKE event_journal INCLUDING DEFAULTS INCLUDING INDEXES)');
      await pool.query('INSERT INTO journal_flat SELECT * FROM event_journal');
      await pool.query('ANALYZE event_journal');
      await pool.query('ANALYZE journal_flat');
      const seedSeconds = round((performance.now() - t0) / 1000);
      const partitions = (await listJournalPartitions(pool)).length;
      const { rows: sizes } = await pool.query<{ name: string; n: number }>(
        "SELECT relname AS name, reltuples::float8 AS n FROM pg_class WHERE relname LIKE 'event_journal%' OR relname = 'journal_flat'",
      );
      const rowsOf = new Map(sizes.map((r) => [r.name, Math.max(0, r.n)]));
      const { rows: ids } = await pool.query<{ lo: number; hi: number }>(
        'SELECT min(id) AS lo, max(id) AS hi FROM event_journal',
      );
      const mid = Math.floor((ids[0].lo + ids[0].hi) / 2);
      const { rows: replayed } = await pool.query<{ source: string }>(
        "SELECT payload->>'_replayed_from_event_id' AS source FROM event_journal WHERE replay_count > 0 LIMIT 1",
      );
      const day = new Date(Date.UTC(2026, 5, 15));
      const hourEnd = new Date(day.getTime() + 3_600_000);
      const range = { start: day.toISOString(), end: hourEnd.toISOString(), maxId: ids[0].hi };
      const queries: Record<string, (q: Queryable) => Promise<unknown>> = {
        'GET /events (one day)': (q) =>
          listEvents(q, {
            since: day.toISOString(),
            until: new Date(day.getTime() + 86_400_000).toISOString(),
            limit: 50,
          }),
        'GET /events (tenant, topic)': (q) => listEvents(q, { tenantId: 'tenant-007', topic: TOPICS[1], limit: 50 }),
        'GET /events (keyset page)': (q) => listEvents(q, { before: mid, limit: 50 }),
        'GET /events/:id': (q) => getEvent(q, mid),
        'SSE resume (Last-Event-ID)': (q) => eventsAfter(q, mid, {}, 100),
        'lineage (replays of an event)': (q) => replaysOf(q, Number(replayed[0].source)),
        'range replay page (one hour)': (q) => rangePage(q, range, 0, 500),
        'range replay count (one hour)': (q) => countRange(q, range),
      };
      const results: Record<string, unknown>[] = [];
      const targets: Target[] = [];
      for (const [name, call] of Object.entries(queries)) {
        const { db: rec, calls } = recorder();
        await call(rec);
        const { text, values } = calls[0];
        const measure = async (sql: string) => {
          const times: number[] = [];
          let plan: PlanNode | undefined;
          for (let i = 0; i < Math.max(3, repeat); i++) {
            const { rows: out } = await pool.query<{
              'QUERY PLAN': Array<{ Plan: PlanNode; 'Execution Time': number }>;
            }>(`EXPLAIN (ANALYZE, FORMAT JSON) ${sql}`, values);
            plan = out[0]['QUERY PLAN'][0].Plan;
            times.push(out[0]['QUERY PLAN'][0]['Execution Time']);
          }
          return { ms: summarize(times), ...scans(plan!, rowsOf) };
        };
        const partitioned = await measure(text);
        const flat = await measure(text.replaceAll('event_journal', 'journal_flat'));
        const ratio = round(partitioned.ms.median / Math.max(flat.ms.median, 0.001));
        results.push({ query: name, partitioned, flat, ratioPartitionedToFlat: ratio });
        const timeBound = /one day|one hour/.test(name);
        targets.push({
          name: `${name}: ${timeBound ? 'scans only the partitions of its window' : 'index-bound in every partition'}`,
          target: timeBound ? '1 partition scanned, no Seq Scan on rows' : 'no Seq Scan on a partition with rows',
          actual:
            `${partitioned.partitionsScanned}/${partitions} partitions, ${partitioned.scanTypes.join(' + ')}` +
            (partitioned.seqScannedWithRows.length ? `; Seq Scan on ${partitioned.seqScannedWithRows.join(', ')}` : ''),
          met: partitioned.seqScannedWithRows.length === 0 && (!timeBound || partitioned.partitionsScanned <= 1),
        });
      }
      printTargets('partitions', targets);
      const file = writeResult('partitions', started, {
        parameters: { rows, months: MONTHS, partitions, repeat: Math.max(3, repeat), seedSeconds },
        queries: results,
        targets,
      });
      console.log(`[partitions] wrote ${file}`);
    } finally {
      await pool.end();
    }
  });
}

/** The fresh database's partitions reshaped as a year of monthly partitions (the conversion's one ends before). */
async function yearOfPartitions(pool: Pool) {
  const partitions = await listJournalPartitions(pool);
  const before = partitions.find((p) => p.from === null)!;
  const first = partitions.find((p) => p.from !== null)!.from!;
  await pool.query(`ALTER TABLE event_journal DETACH PARTITION ${before.name}`);
  await pool.query(
    `ALTER TABLE event_journal ATTACH PARTITION ${before.name} FOR VALUES FROM (MINVALUE) TO ('${YEAR_START.toISOString()}')`,
  );
  for (let from = YEAR_START; from < first; from = nextPeriod(from, 'month')) {
    const to = nextPeriod(from, 'month');
    await withTransaction(pool, (client) => createJournalPartition(client, partitionName(from, 'month'), from, to));
  }
}

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type http from 'node:http';
import { startLagMonitor, type LagMonitor } from '../../ingest/lag-monitor';
import { createLogger } from '../../shared/logger';
import { initAlertSeries } from '../../shared/metrics';
import { startMetricsServer } from '../../shared/metrics-server';
import { createApiEnv, type ApiEnv } from '../support/api';
import { startPrometheus, type TestPrometheus } from '../support/prometheus';
import { eventually } from '../support/sink';

const REPO = path.resolve(__dirname, '../..');
const dashboard = JSON.parse(
  fs.readFileSync(path.join(REPO, 'monitoring/grafana/dashboards/crm_events_pipeline.json'), 'utf8'),
) as {
  panels: { id: number; title: string; targets?: { expr?: string; rawSql?: string }[] }[];
};
const targets = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: `${p.id} ${p.title}`, ...t })));

let env: ApiEnv;
let metricsServer: http.Server;
let prometheus: TestPrometheus;
let promUrl: string;
let lagMonitor: LagMonitor;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crm-prom-'));

const portOf = (server: http.Server) => (server.address() as { port: number }).port;

beforeAll(async () => {
  env = await createApiEnv('prom');
  initAlertSeries(env.h.metrics);
  // Lag is the lag monitor's (outside the data path), as in the service.
  lagMonitor = startLagMonitor({
    kafka: env.h.kafka,
    groupId: env.h.config.kafka.groupId,
    topics: env.h.config.kafka.topics,
    metrics: env.h.metrics,
    log: env.h.log,
    intervalMs: 500,
  });
  metricsServer = await startMetricsServer(env.h.metrics.registry, '127.0.0.1', 0, createLogger('silent'));
  await env.app.listen({ host: '127.0.0.1', port: 0 });
  // The repository's native configuration, pointed at this test's ports, scraping every second; no Alertmanager: this
  // test's alerts must not reach a local one (and its webhook). test/integration/alertmanager.test.ts has one.
  prometheus = await startPrometheus(dir, (config) =>
    config
      .replace('127.0.0.1:9105', `127.0.0.1:${portOf(metricsServer)}`)
      .replace('127.0.0.1:9106', `127.0.0.1:${portOf(env.app.server)}`)
      .replace(/^alerting:\n(?: .*\n)+/m, ''),
  );
  promUrl = prometheus.url;
});

afterAll(async () => {
  await lagMonitor?.stop();
  prometheus?.stop();
  metricsServer?.close();
  await env?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function query(expr: string): Promise<unknown[]> {
  const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
  const body = (await res.json()) as { status: string; data?: { result: unknown[] }; error?: string };
  if (body.status !== 'success') throw new Error(`${expr}: ${body.error}`);
  return body.data!.result;
}

it('scrapes both jobs and loads every alert rule from the repository', async () => {
  await eventually(async () => (await query('up == 1')).length === 2, 'both targets up');
  const rules = (await (await fetch(`${promUrl}/api/v1/rules`)).json()) as {
    data: { groups: { rules: { name: string }[] }[] };
  };
  expect(rules.data.groups.flatMap((g) => g.rules.map((r) => r.name)).sort()).toEqual([
    'CrmEventsAccountingMismatch',
    'CrmEventsConsumerLagHigh',
    'CrmEventsCoordinateReuse',
    'CrmEventsDlqEntriesParked',
    'CrmEventsDlqGrowing',
    'CrmEventsIngestConsumerRestarting',
    'CrmEventsJournalMaintenanceStale',
    'CrmEventsJournalStrayRows',
    'CrmEventsPartitionStalled',
    'CrmEventsPersistenceStalled',
    'CrmEventsReplayFailures',
    'CrmEventsSinkDown',
  ]);
});

it('after real traffic, every Prometheus expression of the dashboard returns data', async () => {
  const { h, app } = env;
  await h.send(
    h.topics.leads,
    Array.from({ length: 30 }, (_, i) => ({ tenant_id: `tenant-${i % 3}`, name: `p${i}` })),
  );
  await h.send(h.topics.jobs, ['not json']);
  const id = await eventually(
    async () => (await h.pool.query('SELECT max(id) AS id FROM event_journal')).rows[0].id,
    'events journaled',
  );
  expect(
    (await app.inject({ method: 'POST', url: `/replay/${id}`, headers: { 'x-requested-by': 'test' } })).statusCode,
  ).toBe(200);
  await app.inject({ method: 'GET', url: '/events/latest' });
  const empty: string[] = [];
  await eventually(
    async () => {
      empty.length = 0;
      for (const t of targets.filter((x) => x.expr))
        if ((await query(t.expr!)).length === 0) empty.push(`${t.panel}: ${t.expr}`);
      return empty.length === 0;
    },
    'every dashboard expression to return data',
    60_000,
    1000,
  ).catch(() => undefined);
  expect(empty).toEqual([]);
});

it('every Postgres query of the dashboard runs against the schema (Grafana macros expanded)', async () => {
  const expand = (sql: string) =>
    sql
      .replace(/\$__timeGroupAlias\((\w+),[^)]*\)/g, "date_trunc('minute', $1) AS time")
      .replace(/\$__timeFilter\((\w+)\)/g, "$1 > now() - interval '6 hours'")
      .replace(/\$__timeFrom\(\)/g, "now() - interval '6 hours'")
      .replace(/\$__timeTo\(\)/g, 'now()');
  for (const t of targets.filter((x) => x.rawSql)) {
    const { rows } = await env.h.pool.query(expand(t.rawSql!));
    expect({ panel: t.panel, ok: Array.isArray(rows) }).toEqual({ panel: t.panel, ok: true });
  }
  const recent = targets.find((t) => t.panel.endsWith('Recent Replays'));
  expect(recent?.rawSql).toBeDefined();
  const replays = await env.h.pool.query(expand(recent!.rawSql!));
  expect(replays.rows.length).toBeGreaterThan(0); // the replay above shows in "recent replays"
});

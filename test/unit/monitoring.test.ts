import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { DEFAULTS } from '../../shared/config';
import { createMetrics } from '../../shared/metrics';

/**
 * The operator surface in monitoring/: the Grafana dashboard and its provisioning, the Prometheus configurations,
 * the alert rules and their runbooks, checked against the seeds and against the metrics the service registers.
 * promtool (Debian package `prometheus`) validates the configuration and runs the alert unit tests.
 */
const ROOT = path.join(__dirname, '../..');
const read = (file: string) => fs.readFileSync(path.join(ROOT, file), 'utf8');

interface Target {
  refId: string;
  expr?: string;
  rawSql?: string;
  format?: string;
  legendFormat?: string;
  instant?: boolean;
  datasource?: { type: string; uid: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  datasource: { type: string; uid: string };
  gridPos: { x: number; y: number; w: number; h: number };
  targets: Target[];
  fieldConfig?: { defaults: Record<string, unknown> };
  options?: Record<string, unknown>;
  transformations?: unknown[];
}
interface Rule {
  alert: string;
  expr: string;
  for?: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}
interface ScrapeConfig {
  job_name: string;
  metrics_path?: string;
  static_configs: { targets: string[] }[];
  metric_relabel_configs: { source_labels: string[]; regex: string; action: string }[];
}
interface PrometheusConfig {
  global: { scrape_interval: string };
  rule_files: string[];
  alerting: { alertmanagers: { static_configs: { targets: string[] }[] }[] };
  scrape_configs: ScrapeConfig[];
}

const dashboard = JSON.parse(read('monitoring/grafana/dashboards/crm_events_pipeline.json')) as {
  uid: string;
  title: string;
  schemaVersion: number;
  panels: Panel[];
};
const panels = dashboard.panels;
const panel = (id: number) => panels.find((p) => p.id === id)!;
const byTitle = (title: string) => panels.find((p) => p.title === title);
const datasources = (
  parse(read('monitoring/grafana/provisioning/datasources/datasources.yml')) as {
    datasources: { uid: string; type: string; url: string; user?: string; jsonData?: Record<string, unknown> }[];
  }
).datasources;
const PROMETHEUS = { type: 'prometheus', uid: 'prometheus' };
const POSTGRES = { type: 'grafana-postgresql-datasource', uid: 'crm-events-postgres' };

const rulesFile = 'monitoring/rules/crm-events.yml';
const rules = parse(read(rulesFile)) as { groups: { name: string; rules: Rule[] }[] };
const alerts = rules.groups.flatMap((g) => g.rules);
const alert = (name: string) => alerts.find((a) => a.alert === name)!;
const ALERTS = [
  'CrmEventsSinkDown',
  'CrmEventsPersistenceStalled',
  'CrmEventsDlqGrowing',
  'CrmEventsConsumerLagHigh',
  'CrmEventsReplayFailures',
  'CrmEventsDlqEntriesParked',
  'CrmEventsPartitionStalled',
  'CrmEventsIngestConsumerRestarting',
  'CrmEventsAccountingMismatch',
  'CrmEventsCoordinateReuse',
  'CrmEventsJournalStrayRows',
  'CrmEventsJournalMaintenanceStale',
];
const runbooks = read('docs/runbooks.md');

/** Names the service exposes, with the series names Prometheus derives from histograms. */
const exposed = new Set(
  (createMetrics().registry.getMetricsAsArray() as unknown as { name: string; type: string }[]).flatMap(
    ({ name, type }) => (type === 'histogram' ? [name, `${name}_bucket`, `${name}_sum`, `${name}_count`] : [name]),
  ),
);
const metricsIn = (expr: string) => [...new Set(expr.match(/\bcrm_events_\w+/g) ?? [])];

describe('Grafana dashboard crm_events_pipeline.json', () => {
  it('is the CRM Events Pipeline dashboard, reachable at /d/crm-events-pipeline', () => {
    expect(dashboard.uid).toBe('crm-events-pipeline');
    expect(dashboard.title).toBe('CRM Events Pipeline');
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(dashboard.schemaVersion).toBeLessThanOrEqual(41);
  });

  it('has unique panel ids', () => {
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('lays panels out on the 24-column grid without overlaps', () => {
    for (const { id, gridPos: g } of panels) {
      expect({ id, inside: g.x >= 0 && g.y >= 0 && g.w > 0 && g.h > 0 && g.x + g.w <= 24 }).toEqual({
        id,
        inside: true,
      });
    }
    for (const [i, a] of panels.entries()) {
      for (const b of panels.slice(i + 1)) {
        const [p, q] = [a.gridPos, b.gridPos];
        const overlap = p.x < q.x + q.w && q.x < p.x + p.w && p.y < q.y + q.h && q.y < p.y + p.h;
        expect({ panels: [a.id, b.id], overlap }).toEqual({ panels: [a.id, b.id], overlap: false });
      }
    }
  });

  it('has panel 20 "CRM Events Ingested (by topic)" as in seed 002', () => {
    const p = panel(20);
    expect(p).toMatchObject({ type: 'timeseries', title: 'CRM Events Ingested (by topic)', datasource: PROMETHEUS });
    expect(p.gridPos).toMatchObject({ w: 12, h: 8 });
    expect(p.targets).toEqual([
      {
        expr: 'sum by (topic) (rate(crm_events_ingested_total[5m]))',
        legendFormat: '{{topic}}',
        intervalFactor: 1,
        refId: 'A',
      },
    ]);
    expect(p.fieldConfig).toEqual({
      defaults: { unit: 'ops', custom: { drawStyle: 'line', lineInterpolation: 'smooth', fillOpacity: 10 } },
    });
    expect(p.options).toEqual({ legend: { displayMode: 'list', placement: 'bottom', showLegend: true } });
  });

  it('has panel 21 "Top Tenants by CRM Events (5m)" as in seed 002', () => {
    const p = panel(21);
    expect(p).toMatchObject({ type: 'table', title: 'Top Tenants by CRM Events (5m)', datasource: PROMETHEUS });
    expect(p.gridPos).toMatchObject({ w: 12, h: 8 });
    expect(p.targets).toEqual([
      {
        expr: 'topk(10, sum by (tenant_id) (rate(crm_events_ingested_total[5m])))',
        legendFormat: '{{tenant_id}}',
        refId: 'A',
        instant: true,
      },
    ]);
    expect(p.options).toEqual({ showHeader: true });
    expect(p.transformations).toEqual([
      {
        id: 'organize',
        options: { excludeByName: { Time: true }, renameByName: { tenant_id: 'Tenant ID', Value: 'Events/sec' } },
      },
    ]);
    expect(p.fieldConfig).toEqual({ defaults: { unit: 'ops', decimals: 3 } });
  });

  it('puts panels 20 and 21 side by side, as the seed does', () => {
    expect(panel(20).gridPos.y).toBe(panel(21).gridPos.y);
    expect(panel(20).gridPos.x + panel(20).gridPos.w).toBe(panel(21).gridPos.x);
  });

  it('has panel 22 "Persisted vs Ingested" (seed 000)', () => {
    const p = panel(22);
    expect(p).toMatchObject({ type: 'timeseries', title: 'Persisted vs Ingested', datasource: PROMETHEUS });
    const exprs = p.targets.map((t) => t.expr);
    expect(exprs).toContain('sum(rate(crm_events_ingested_total[5m]))');
    expect(exprs).toContain('sum(rate(crm_events_persisted_total[5m]))');
  });

  it.each([
    ['DLQ Size (unresolved)', PROMETHEUS, /crm_events_dlq_size/],
    ['Consumer Lag (by topic)', PROMETHEUS, /sum by \(topic\) \(crm_events_consumer_lag\)/],
    ['Replay Workflows by Status', PROMETHEUS, /sum by \(status\) .*crm_events_replay_workflows_total/],
    ['Live Stream Clients (SSE)', PROMETHEUS, /crm_events_sse_clients/],
    [
      'Original vs Replayed Events',
      POSTGRES,
      /CASE WHEN replay_count = 0 .* "Original"[\s\S]*replay_count > 0 .* "Replayed"/,
    ],
    ['Replay Sources', POSTGRES, /replay_source[\s\S]*WHERE replay_count > 0[\s\S]*GROUP BY/],
    ['Replay Rate', POSTGRES, /replay_count > 0[\s\S]*NULLIF\(COUNT\(\*\), 0\)/],
    ['Recent Replays', POSTGRES, /payload->>'_replayed_from_event_id'[\s\S]*WHERE replay_count > 0[\s\S]*LIMIT 20/],
  ])('has a "%s" panel', (title, datasource, query) => {
    const p = byTitle(title);
    expect(p).toBeDefined();
    expect(p!.datasource).toEqual(datasource);
    expect(p!.targets.map((t) => t.expr ?? t.rawSql).join('\n')).toMatch(query);
  });

  it('shows replay sources as a pie, the replay rate as a gauge and recent replays as a table', () => {
    expect(byTitle('Replay Sources')!.type).toBe('piechart');
    expect(byTitle('Replay Rate')!.type).toBe('gauge');
    expect(byTitle('Replay Rate')!.fieldConfig!.defaults).toMatchObject({ unit: 'percent', min: 0, max: 100 });
    expect(byTitle('Recent Replays')!.type).toBe('table');
  });

  it('references only provisioned datasources, as {type, uid} objects', () => {
    const provisioned = datasources.map((d) => ({ type: d.type, uid: d.uid }));
    for (const p of panels) {
      expect(provisioned).toContainEqual(p.datasource);
      for (const t of p.targets) if (t.datasource) expect(t.datasource).toEqual(p.datasource);
    }
  });

  it('gives every Prometheus target an expression over metrics the service exposes', () => {
    for (const p of panels.filter((x) => x.datasource.uid === PROMETHEUS.uid)) {
      expect(p.targets.length).toBeGreaterThan(0);
      for (const t of p.targets) {
        expect({ panel: p.id, refId: t.refId, expr: typeof t.expr === 'string' && t.expr.trim().length > 0 }).toEqual({
          panel: p.id,
          refId: t.refId,
          expr: true,
        });
        const metrics = metricsIn(t.expr!);
        expect(metrics.length).toBeGreaterThan(0);
        for (const m of metrics)
          expect({ panel: p.id, metric: m, exposed: exposed.has(m) }).toMatchObject({ exposed: true });
      }
    }
  });

  it('gives every Postgres target raw SQL over the journal tables only', () => {
    const tables = ['event_journal', 'event_dlq', 'replay_audit'];
    for (const p of panels.filter((x) => x.datasource.uid === POSTGRES.uid)) {
      for (const t of p.targets) {
        expect(t.rawSql).toMatch(/^SELECT\b/);
        expect(['table', 'time_series']).toContain(t.format);
        const code = t.rawSql!.replace(/'[^']*'|"[^"]*"/g, "''"); // literals and quoted aliases are not tables
        for (const [, table] of code.matchAll(/\b(?:FROM|JOIN)\s+(\w+)/gi)) expect(tables).toContain(table);
      }
    }
  });
});

describe('Grafana provisioning', () => {
  it('provisions Prometheus and the journal Postgres under the uids the dashboard uses', () => {
    const prom = datasources.find((d) => d.uid === 'prometheus')!;
    expect(prom).toMatchObject({ type: 'prometheus', url: 'http://prometheus:9090' });
    const pg = datasources.find((d) => d.uid === 'crm-events-postgres')!;
    expect(pg).toMatchObject({ type: POSTGRES.type, url: 'postgres:5432', user: 'crm_events' });
    expect(pg.jsonData).toMatchObject({ database: 'crm_events' });
  });
});

describe('Prometheus configuration', () => {
  const compose = parse(read('monitoring/prometheus.yml')) as PrometheusConfig;
  const native = parse(read('monitoring/prometheus.native.yml')) as PrometheusConfig;
  const job = (config: PrometheusConfig, name: string) => config.scrape_configs.find((j) => j.job_name === name)!;

  it.each([
    ['prometheus.yml (compose)', compose, 'crm-events-sink'],
    ['prometheus.native.yml', native, '127.0.0.1'],
  ])('%s scrapes the sink and its API every 10s and loads the rules', (_name, config, host) => {
    expect(config.global.scrape_interval).toBe('10s');
    expect(config.rule_files).toEqual(['rules/*.yml']);
    expect(config.scrape_configs.map((j) => j.job_name).sort()).toEqual(['crm-events-sink', 'crm-events-sink-api']);
    expect(job(config, 'crm-events-sink').static_configs[0].targets).toEqual([`${host}:${DEFAULTS.METRICS_PORT}`]);
    expect(job(config, 'crm-events-sink-api').static_configs[0].targets).toEqual([`${host}:${DEFAULTS.API_PORT}`]);
    expect(job(config, 'crm-events-sink-api').metrics_path ?? '/metrics').toBe('/metrics');
  });

  it('differs between compose and native only in the scrape and Alertmanager targets', () => {
    const strip = (c: PrometheusConfig) => ({
      ...c,
      scrape_configs: c.scrape_configs.map((j) => ({ ...j, static_configs: [] })),
      alerting: { alertmanagers: c.alerting.alertmanagers.map((a) => ({ ...a, static_configs: [] })) },
    });
    expect(strip(native)).toEqual(strip(compose));
  });

  it('keeps every series from exactly one job, so one process scraped twice is never counted twice', () => {
    const regexOf = (name: string, action: string) => {
      const relabel = job(compose, name).metric_relabel_configs.find((r) => r.action === action)!;
      expect(relabel.source_labels).toEqual(['__name__']);
      return new RegExp(`^(?:${relabel.regex})$`);
    };
    const dropped = regexOf('crm-events-sink', 'drop');
    const kept = regexOf('crm-events-sink-api', 'keep');
    expect(dropped.source).toBe(kept.source);
    const apiOwned = [...exposed].filter((m) => kept.test(m)).sort();
    expect(apiOwned).toEqual(
      [
        'crm_events_http_request_duration_seconds',
        'crm_events_http_request_duration_seconds_bucket',
        'crm_events_http_request_duration_seconds_count',
        'crm_events_http_request_duration_seconds_sum',
        'crm_events_http_requests_total',
        'crm_events_messages_total',
        'crm_events_sse_clients',
        'crm_events_sse_dropped_total',
      ].filter((m) => exposed.has(m)),
    );
    for (const m of ['crm_events_ingested_total', 'crm_events_dlq_size', 'crm_events_replay_workflows_total']) {
      expect(dropped.test(m)).toBe(false);
    }
  });
});

describe('alert rules', () => {
  it('defines the twelve alerts in group crm_events_alerts', () => {
    expect(rules.groups.map((g) => g.name)).toEqual(['crm_events_alerts']);
    expect(alerts.map((a) => a.alert).sort()).toEqual([...ALERTS].sort());
  });

  it('has CrmEventsSinkDown as in seed 002, typo fixed, with a runbook that works natively too', () => {
    const a = alert('CrmEventsSinkDown');
    expect(a.expr).toBe('up{job="crm-events-sink"} == 0');
    expect(a.for).toBe('2m');
    expect(a.labels).toEqual({
      severity: 'warning',
      team: 'crm',
      service: 'crm-events-sink',
      product: 'aetherlink',
      component: 'consumer',
    });
    expect(a.annotations.summary).toBe('CRM events sink is down');
    expect(a.annotations.description).toMatch(
      /^The sink that materializes and counts ApexFlow CRM events is not being scraped/,
    );
    expect(a.annotations.description).toContain('Events may be queuing in Kafka but not being processed.');
    expect(read(rulesFile)).not.toContain('scraapped');
    expect(a.annotations.runbook).toContain('npm run cli -- stack status');
    expect(a.annotations.runbook).toContain('docker compose up -d crm-events-sink');
  });

  it.each(ALERTS)('%s has labels, summary, description and a runbook section', (name) => {
    const a = alert(name);
    expect(Object.keys(a.labels).sort()).toEqual(['component', 'product', 'service', 'severity', 'team']);
    expect(['warning', 'critical']).toContain(a.labels.severity);
    expect(a.labels).toMatchObject({ team: 'crm', service: 'crm-events-sink', product: 'aetherlink' });
    expect(a.annotations.summary?.length).toBeGreaterThan(10);
    expect(a.annotations.description?.length).toBeGreaterThan(20);
    expect(a.annotations.runbook?.length).toBeGreaterThan(20);
    expect(a.annotations.runbook_url).toBe(`docs/runbooks.md#${name.toLowerCase()}`);
    expect(runbooks).toMatch(new RegExp(`^## ${name}$`, 'm'));
  });

  it.each(ALERTS)('%s queries only metrics the service exposes', (name) => {
    const metrics = metricsIn(alert(name).expr);
    if (name === 'CrmEventsSinkDown') expect(metrics).toEqual([]);
    else expect(metrics.length).toBeGreaterThan(0);
    for (const m of metrics) expect({ metric: m, exposed: exposed.has(m) }).toEqual({ metric: m, exposed: true });
  });

  it('has the thresholds the operator docs give', () => {
    expect(alert('CrmEventsPersistenceStalled')).toMatchObject({ for: '10m' });
    expect(alert('CrmEventsConsumerLagHigh')).toMatchObject({
      expr: 'sum by (topic) (crm_events_consumer_lag) > 1000',
      for: '10m',
    });
    expect(alert('CrmEventsReplayFailures').expr).toContain('crm_events_replay_workflows_total{status="failed"}[15m]');
    expect(alert('CrmEventsDlqEntriesParked').expr).toBe(
      'sum(increase(crm_events_dlq_retry_total{result="parked"}[1h])) > 0',
    );
    expect(alert('CrmEventsDlqGrowing').expr).toMatch(/crm_events_dlq_total[\s\S]*crm_events_dlq_size/);
  });

  it('judges persistence per topic and partition, by outcomes and by committed-offset progress against lag', () => {
    const expr = alert('CrmEventsPersistenceStalled').expr;
    // No sum over everything: one partition persisting must not mask another (the seed's expression did).
    expect(expr).not.toMatch(/sum\(/);
    for (const m of [
      'crm_events_consumed_total',
      'crm_events_record_outcomes_total{outcome="journaled"}',
      'crm_events_consumer_lag',
      'changes(crm_events_committed_offset',
    ])
      expect(expr).toContain(m);
    for (const by of expr.match(/\bby \([^)]*\)/g)!) expect(by).toBe('by (topic, partition)');
  });

  it('has the alerts of invariants 2 to 4 per topic and partition', () => {
    expect(alert('CrmEventsPartitionStalled')).toMatchObject({ for: '1m', labels: { severity: 'critical' } });
    expect(alert('CrmEventsPartitionStalled').expr).toMatch(/crm_events_partition_stalled\) == 1/);
    expect(alert('CrmEventsAccountingMismatch')).toMatchObject({ for: '5m', labels: { severity: 'critical' } });
    expect(alert('CrmEventsAccountingMismatch').expr).toMatch(
      /crm_events_consumed_total[\s\S]*- on \(topic, partition\)[\s\S]*crm_events_record_outcomes_total/,
    );
    expect(alert('CrmEventsCoordinateReuse').for).toBeUndefined();
    expect(alert('CrmEventsCoordinateReuse').expr).toContain('increase(crm_events_coordinate_reuse_total[15m])) > 0');
    for (const name of ['CrmEventsPartitionStalled', 'CrmEventsAccountingMismatch', 'CrmEventsCoordinateReuse']) {
      for (const by of alert(name).expr.match(/\bby \([^)]*\)/g)!) expect(by).toBe('by (topic, partition)');
    }
  });

  it('has panels for the lag monitor and the accounting metrics', () => {
    const exprs = panels.flatMap((p) => p.targets.map((t) => t.expr ?? '')).join('\n');
    for (const m of [
      'crm_events_partition_stalled',
      'crm_events_coordinate_reuse_total',
      'crm_events_consumed_total',
      'crm_events_record_outcomes_total',
      'crm_events_committed_offset',
      'max by (topic, partition) (crm_events_consumer_lag)',
    ])
      expect(exprs).toContain(m);
  });

  it('has a firing and a not-firing promtool test case for every alert', () => {
    const tests = parse(read('monitoring/tests/crm-events.test.yml')) as {
      rule_files: string[];
      tests: { alert_rule_test: { alertname: string; exp_alerts: unknown[] }[] }[];
    };
    expect(tests.rule_files).toEqual(['../rules/crm-events.yml']);
    const cases = tests.tests.flatMap((t) => t.alert_rule_test);
    for (const name of ALERTS) {
      const mine = cases.filter((c) => c.alertname === name);
      expect({ name, fires: mine.some((c) => c.exp_alerts.length > 0) }).toEqual({ name, fires: true });
      expect({ name, silent: mine.some((c) => c.exp_alerts.length === 0) }).toEqual({ name, silent: true });
    }
  });

  it('documents every alert, and nothing else, in docs/runbooks.md', () => {
    const sections = [...runbooks.matchAll(/^## (CrmEvents\w+)$/gm)].map((m) => m[1]);
    expect(sections.sort()).toEqual([...ALERTS].sort());
  });
});

describe('promtool', () => {
  const promtool = (...args: string[]) => {
    const result = spawnSync('promtool', args, { cwd: ROOT, encoding: 'utf8' });
    if (result.error && (result.error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Error(
        'promtool is not installed: install the Debian package `prometheus` (apt-get update && apt-get install -y prometheus). ' +
          'scripts/test.sh does this.',
      );
    }
    return { status: result.status, output: `${result.stdout}${result.stderr}` };
  };
  const expectSuccess = (...args: string[]) => {
    const { status, output } = promtool(...args);
    expect({ command: `promtool ${args.join(' ')}`, status, output }).toMatchObject({ status: 0 });
    return output;
  };

  it('is installed', () => {
    expect(promtool('--version').output).toMatch(/promtool, version \d+\.\d+/);
  });

  it.each(['monitoring/prometheus.yml', 'monitoring/prometheus.native.yml'])('accepts %s', (file) => {
    expect(expectSuccess('check', 'config', file)).toMatch(/SUCCESS: 1 rule files found/);
  });

  it('accepts the alert rules', () => {
    expect(expectSuccess('check', 'rules', rulesFile)).toMatch(/SUCCESS: 12 rules found/);
  });

  it('passes the alert unit tests', () => {
    expect(expectSuccess('test', 'rules', 'monitoring/tests/crm-events.test.yml')).toMatch(/SUCCESS/);
  });

  it('accepts every dashboard expression as PromQL', () => {
    const records = panels.flatMap((p) =>
      p.targets.filter((t) => t.expr).map((t) => ({ record: `dashboard:panel_${p.id}_${t.refId}`, expr: t.expr })),
    );
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crm-dashboard-promql-'));
    const file = path.join(dir, 'dashboard.yml');
    try {
      fs.writeFileSync(file, JSON.stringify({ groups: [{ name: 'dashboard', rules: records }] }));
      expect(expectSuccess('check', 'rules', file)).toContain(`SUCCESS: ${records.length} rules found`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

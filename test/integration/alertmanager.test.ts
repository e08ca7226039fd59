import { execFile } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { createLogger } from '../../shared/logger';
import { createMetrics, type Metrics } from '../../shared/metrics';
import { startMetricsServer } from '../../shared/metrics-server';
import { freePort, startPrometheus, type TestPrometheus } from '../support/prometheus';
import { eventually } from '../support/sink';

/**
 * Alert delivery end to end, nothing faked: the service's metrics (its own registry and metrics server) are scraped
 * by a real Prometheus running the repository's native configuration and alert rules unchanged, which sends its
 * alerts to a real Alertmanager started by `scripts/stack.sh up alertmanager` (a scratch STACK_DIR and free port,
 * ALERT_WEBHOOK_URL pointing at this test's HTTP receiver) with monitoring/alertmanager.yml and its real timings.
 * The receiver gets each alert with its labels and annotations on the receiver its severity routes to, and then its
 * resolution.
 */
const REPO = path.resolve(__dirname, '../..');
const STACK = path.join(REPO, 'scripts/stack.sh');
const run = promisify(execFile);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crm-alertmanager-'));

interface WebhookAlert {
  status: 'firing' | 'resolved';
  labels: Record<string, string>;
  annotations: Record<string, string>;
  startsAt: string;
  endsAt: string;
}
interface Notification {
  receiver: string;
  status: 'firing' | 'resolved';
  groupLabels: Record<string, string>;
  alerts: WebhookAlert[];
}

const received: Notification[] = [];
let receiver: http.Server;
let metrics: Metrics;
let metricsServer: http.Server;
let prometheus: TestPrometheus;
let stackEnv: NodeJS.ProcessEnv;
let alertmanagerUrl: string;

const portOf = (server: net.Server) => (server.address() as net.AddressInfo).port;

/** The alerts of one name the receiver got on one receiver with one status, newest notification last. */
const delivered = (receiverName: string, alertname: string, status: WebhookAlert['status']) =>
  received
    .filter((n) => n.receiver === receiverName)
    .flatMap((n) => n.alerts)
    .filter((a) => a.labels.alertname === alertname && a.status === status);

/** The first such alert, waited for generously: up to 3 minutes (a `for`, group_wait and group_interval). */
const deliveryOf = (receiverName: string, alertname: string, status: WebhookAlert['status']) =>
  eventually(
    async () => delivered(receiverName, alertname, status)[0],
    `the receiver ${receiverName} to get ${alertname} ${status}`,
    180_000,
    500,
  );

beforeAll(async () => {
  if (!fs.existsSync('/usr/bin/prometheus-alertmanager'))
    throw new Error('prometheus-alertmanager is not installed: apt-get install it (scripts/test.sh does)');
  receiver = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      if (req.method === 'POST' && req.url === '/alerts') received.push(JSON.parse(body) as Notification);
      res.writeHead(req.method === 'POST' ? 200 : 405).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));

  metrics = createMetrics();
  metricsServer = await startMetricsServer(metrics.registry, '127.0.0.1', 0, createLogger('silent'));

  const alertmanagerPort = await freePort();
  alertmanagerUrl = `http://127.0.0.1:${alertmanagerPort}`;
  stackEnv = {
    ...process.env,
    STACK_DIR: path.join(dir, 'stack'),
    STACK_ALERTMANAGER_PORT: String(alertmanagerPort),
    ALERT_WEBHOOK_URL: `http://127.0.0.1:${portOf(receiver)}/alerts`,
  };
  await run('bash', [STACK, 'up', 'alertmanager'], { env: stackEnv });

  // The repository's native configuration and rules, its targets and Alertmanager moved to this test's ports.
  prometheus = await startPrometheus(dir, (config) => {
    const adapted = config
      .replace('127.0.0.1:9105', `127.0.0.1:${portOf(metricsServer)}`)
      .replace('127.0.0.1:9106', `127.0.0.1:${portOf(metricsServer)}`)
      .replace("'127.0.0.1:9095'", `'127.0.0.1:${alertmanagerPort}'`);
    expect(adapted).toContain(`'127.0.0.1:${alertmanagerPort}'`);
    return adapted;
  });
  await eventually(async () => {
    const res = await fetch(`${prometheus.url}/api/v1/alertmanagers`);
    const body = (await res.json()) as { data: { activeAlertmanagers: { url: string }[] } };
    return body.data.activeAlertmanagers.some((a) => a.url.includes(`:${alertmanagerPort}/`));
  }, 'Prometheus to know the Alertmanager');
});

afterAll(async () => {
  prometheus?.stop();
  if (stackEnv) await run('bash', [STACK, 'down', 'alertmanager'], { env: stackEnv }).catch(() => undefined);
  metricsServer?.close();
  receiver?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

it('delivers a critical alert to the critical receiver, with its labels and annotations, then its resolution', async () => {
  // What the lag monitor sets when a partition has lag and its committed offset does not move.
  metrics.consumerLag.set({ topic: 'crm.leads', partition: '0' }, 42);
  metrics.partitionStalled.set({ topic: 'crm.leads', partition: '0' }, 1);
  // CrmEventsPartitionStalled fires after `for: 1m`; the critical route waits group_wait 10s.
  const firing = await deliveryOf('crm-events-critical', 'CrmEventsPartitionStalled', 'firing');
  expect(firing.labels).toMatchObject({
    alertname: 'CrmEventsPartitionStalled',
    topic: 'crm.leads',
    partition: '0',
    severity: 'critical',
    service: 'crm-events-sink',
    team: 'crm',
  });
  expect(firing.annotations.summary).toBe('Partition crm.leads/0 is stalled');
  expect(firing.annotations.description).toContain('has 42 records of lag');
  expect(firing.annotations.runbook_url).toBe('docs/runbooks.md#crmeventspartitionstalled');
  expect(firing.annotations.runbook).toContain('curl http://localhost:9106/health');
  const notification = received.find((n) => n.alerts.includes(firing))!;
  expect(notification.groupLabels).toEqual({ alertname: 'CrmEventsPartitionStalled', topic: 'crm.leads' });
  // Critical alerts do not reach the warning receiver.
  expect(delivered('crm-events-warning', 'CrmEventsPartitionStalled', 'firing')).toEqual([]);

  // The offset moves again: the lag monitor clears the gauge; the resolution follows within group_interval (1m).
  metrics.partitionStalled.set({ topic: 'crm.leads', partition: '0' }, 0);
  const resolved = await deliveryOf('crm-events-critical', 'CrmEventsPartitionStalled', 'resolved');
  expect(resolved.labels).toMatchObject({ topic: 'crm.leads', partition: '0' });
  expect(new Date(resolved.endsAt).getTime()).toBeGreaterThan(new Date(resolved.startsAt).getTime());
}, 420_000);

it('delivers a warning alert to the warning receiver', async () => {
  // CrmEventsCoordinateReuse has no `for`: it fires at the first evaluation; the default route waits 30s.
  metrics.coordinateReuse.inc({ topic: 'crm.jobs', partition: '2' });
  const alert = await deliveryOf('crm-events-warning', 'CrmEventsCoordinateReuse', 'firing');
  expect(alert.labels).toMatchObject({ topic: 'crm.jobs', partition: '2', severity: 'warning' });
  expect(alert.annotations.summary).toBe('Kafka coordinates on crm.jobs/2 are being reused');
  expect(alert.annotations.runbook_url).toBe('docs/runbooks.md#crmeventscoordinatereuse');
  expect(delivered('crm-events-critical', 'CrmEventsCoordinateReuse', 'firing')).toEqual([]);
}, 240_000);

it('holds back the sink’s other alerts while CrmEventsSinkDown fires (inhibition in the running Alertmanager)', async () => {
  // Posted as Prometheus posts them (POST /api/v2/alerts): waiting for CrmEventsSinkDown's `for: 2m` adds nothing here.
  const endsAt = new Date(Date.now() + 10 * 60_000).toISOString();
  const sink = { service: 'crm-events-sink', team: 'crm', severity: 'warning' };
  const post = await fetch(`${alertmanagerUrl}/api/v2/alerts`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify([
      {
        labels: { alertname: 'CrmEventsSinkDown', job: 'crm-events-sink', instance: '127.0.0.1:9105', ...sink },
        endsAt,
      },
      { labels: { alertname: 'CrmEventsDlqGrowing', ...sink }, endsAt },
      { labels: { alertname: 'OtherServiceDown', service: 'billing', severity: 'warning' }, endsAt },
    ]),
  });
  expect(post.status).toBe(200);
  const state = async (alertname: string) => {
    const res = await fetch(
      `${alertmanagerUrl}/api/v2/alerts?filter=${encodeURIComponent(`alertname="${alertname}"`)}`,
    );
    const [alert] = (await res.json()) as { status: { state: string; inhibitedBy: string[] } }[];
    return alert?.status;
  };
  const dlq = await eventually(async () => state('CrmEventsDlqGrowing'), 'Alertmanager to list CrmEventsDlqGrowing');
  expect(dlq.state).toBe('suppressed');
  expect(dlq.inhibitedBy.length).toBe(1);
  expect(await state('CrmEventsSinkDown')).toMatchObject({ state: 'active', inhibitedBy: [] });
  expect(await state('OtherServiceDown')).toMatchObject({ state: 'active', inhibitedBy: [] });
});

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';

/**
 * monitoring/alertmanager.yml, checked by Debian's amtool (package prometheus-alertmanager): the configuration loads,
 * each of the project's alerts reaches the receiver for its severity, CrmEventsSinkDown inhibits the others, and the
 * native Prometheus and stack agree on where Alertmanager listens. Delivery itself is test/integration/alertmanager.
 */
const ROOT = path.join(__dirname, '../..');
const read = (file: string) => fs.readFileSync(path.join(ROOT, file), 'utf8');
const CONFIG = 'monitoring/alertmanager.yml';

interface Route {
  receiver?: string;
  group_by?: string[];
  matchers?: string[];
  routes?: Route[];
}
interface AlertmanagerConfig {
  route: Route;
  receivers: { name: string; webhook_configs?: { url: string; send_resolved?: boolean }[] }[];
  inhibit_rules: { source_matchers: string[]; target_matchers: string[]; equal: string[] }[];
}
const config = parse(read(CONFIG)) as AlertmanagerConfig;
const rules = (
  parse(read('monitoring/rules/crm-events.yml')) as {
    groups: { rules: { alert: string; labels: Record<string, string> }[] }[];
  }
).groups.flatMap((g) => g.rules);

function amtool(...args: string[]): { status: number | null; stdout: string; output: string } {
  const result = spawnSync('amtool', args, { cwd: ROOT, encoding: 'utf8' });
  if (result.error && (result.error as NodeJS.ErrnoException).code === 'ENOENT') {
    throw new Error('amtool is not installed: apt-get install prometheus-alertmanager (scripts/test.sh does)');
  }
  return { status: result.status, stdout: result.stdout, output: `${result.stdout}${result.stderr}` };
}

/** The receiver amtool routes an alert with these labels to. */
function receiverFor(labels: Record<string, string>): string {
  const pairs = Object.entries(labels).map(([k, v]) => `${k}=${v}`);
  const { status, stdout, output } = amtool('config', 'routes', 'test', `--config.file=${CONFIG}`, ...pairs);
  expect({ labels, status, output }).toMatchObject({ status: 0 });
  return stdout.trim();
}

it('is accepted by amtool check-config', () => {
  const { status, output } = amtool('check-config', CONFIG);
  expect({ status, output }).toMatchObject({ status: 0 });
  expect(output).toContain('SUCCESS');
});

it('routes every alert of the rules to the receiver of its severity, grouped by alert name and topic', () => {
  expect(rules.length).toBeGreaterThan(0);
  const severities = new Set(rules.map((r) => r.labels.severity));
  expect([...severities].sort()).toEqual(['critical', 'warning']);
  for (const rule of rules) {
    const labels = { alertname: rule.alert, ...rule.labels };
    expect({ alert: rule.alert, receiver: receiverFor(labels) }).toEqual({
      alert: rule.alert,
      receiver: `crm-events-${rule.labels.severity}`,
    });
  }
  expect(config.route.group_by).toEqual(['alertname', 'topic']);
});

it('has every receiver post to the webhook, resolved alerts included, at the URL the stack replaces', () => {
  const stackDefault = /^DEFAULT_ALERT_WEBHOOK_URL=(\S+)$/m.exec(read('scripts/stack/alertmanager.sh'))?.[1];
  expect(stackDefault).toBe('http://127.0.0.1:5001/alerts');
  // docker-compose.yml's entrypoint replaces the same URL.
  expect(read('docker-compose.yml')).toContain(`s#${stackDefault}#`);
  expect(config.receivers.map((r) => r.name).sort()).toEqual(['crm-events-critical', 'crm-events-warning']);
  for (const receiver of config.receivers) {
    expect(receiver.webhook_configs).toEqual([{ url: stackDefault, send_resolved: true }]);
  }
});

it('lets CrmEventsSinkDown inhibit the sink’s other alerts, not itself', () => {
  expect(config.inhibit_rules).toEqual([
    {
      source_matchers: ['alertname="CrmEventsSinkDown"'],
      target_matchers: ['service="crm-events-sink"', 'alertname!="CrmEventsSinkDown"'],
      equal: ['service'],
    },
  ]);
  // Every alert carries the label the rule compares.
  for (const rule of rules)
    expect({ alert: rule.alert, service: rule.labels.service }).toMatchObject({
      service: 'crm-events-sink',
    });
});

it('is where the native Prometheus sends alerts: the stack’s default Alertmanager port', () => {
  const port = /^ALERTMANAGER_PORT="\$\{STACK_ALERTMANAGER_PORT:-(\d+)\}"$/m.exec(read('scripts/stack/common.sh'))?.[1];
  expect(port).toBe('9095');
  // 9093, Alertmanager's usual port, is the native Kafka controller's.
  expect(read('scripts/stack/common.sh')).toContain('KAFKA_CONTROLLER_PORT="${STACK_KAFKA_CONTROLLER_PORT:-9093}"');
  const native = parse(read('monitoring/prometheus.native.yml')) as {
    alerting: { alertmanagers: { static_configs: { targets: string[] }[] }[] };
  };
  expect(native.alerting.alertmanagers.flatMap((a) => a.static_configs.flatMap((c) => c.targets))).toEqual([
    `127.0.0.1:${port}`,
  ]);
});

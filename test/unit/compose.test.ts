import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { DEFAULTS, loadConfig } from '../../shared/config';

/**
 * No Docker engine runs here, so docker-compose.yml is checked by reading it: services, published ports,
 * healthchecks, start order, and that the sink gets exactly the configuration the native stack uses.
 */
const ROOT = path.join(__dirname, '../..');
const read = (file: string) => fs.readFileSync(path.join(ROOT, file), 'utf8');

interface Service {
  image?: string;
  build?: { context: string; dockerfile: string };
  command?: string[] | string;
  entrypoint?: string[];
  environment?: Record<string, string | number | boolean>;
  ports?: string[];
  volumes?: string[];
  healthcheck?: { test: string[] | string; interval?: string; timeout?: string; retries?: number };
  depends_on?: Record<string, { condition: string }> | string[];
  restart?: string;
  extra_hosts?: string[];
}

const compose = parse(read('docker-compose.yml')) as { services: Record<string, Service>; volumes?: object };
const services = compose.services;
const ONE_SHOTS = ['temporal-admin-tools'];

/**
 * Resolves `${NAME:-default}` and `${NAME:?error}` the way compose does, with `shell` as the caller's environment: a
 * required variable that is not set fails, as `docker compose up` does.
 */
function interpolate(value: string, shell: Record<string, string>): string {
  return value.replace(/\$\{(\w+)(?::?([-?])([^}]*))?\}/g, (_match, name: string, kind?: string, text?: string) => {
    if (shell[name] !== undefined) return shell[name];
    if (kind === '?') throw new Error(`compose refuses to start: ${name}: ${text}`);
    return text ?? '';
  });
}

const SHELL = { AUTH_JWT_SECRET: 'a-secret-the-operator-generated-0123456789' };

function sinkEnv(shell: Record<string, string> = SHELL): Record<string, string> {
  const env = services['crm-events-sink'].environment ?? {};
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, interpolate(String(v), shell)]));
}

function published(service: string): Map<number, number> {
  const map = new Map<number, number>();
  for (const spec of services[service].ports ?? []) {
    const match = /^(?:[\d.]+:)?(\d+):(\d+)(?:\/tcp)?$/.exec(spec);
    if (!match) throw new Error(`${service}: unexpected port syntax "${spec}" (use "host:container")`);
    map.set(Number(match[1]), Number(match[2]));
  }
  return map;
}

function dependsOn(service: string): Record<string, { condition: string }> {
  const deps = services[service].depends_on ?? {};
  if (Array.isArray(deps)) throw new Error(`${service}: depends_on must use the long form with a condition`);
  return deps;
}

describe('docker-compose.yml', () => {
  it('runs the whole stack', () => {
    expect(Object.keys(services).sort()).toEqual(
      [
        'alertmanager',
        'crm-events-sink',
        'grafana',
        'kafka',
        'postgres',
        'prometheus',
        'temporal',
        'temporal-admin-tools',
        'temporal-db',
        'temporal-ui',
      ].sort(),
    );
    expect(services.postgres.image).toBe('postgres:15');
    expect(services.kafka.image).toBe('apache/kafka:4.1.1');
    expect(services.temporal.image).toMatch(/^temporalio\/auto-setup:/);
    expect(services['crm-events-sink'].build).toEqual({ context: '.', dockerfile: 'Dockerfile' });
  });

  it.each([
    ['postgres', 5446, 5432],
    ['kafka', 9092, 9092],
    ['temporal', 7233, 7233],
    ['temporal-ui', 8233, 8080],
    ['prometheus', 9090, 9090],
    ['alertmanager', 9093, 9093],
    ['grafana', 3000, 3000],
    ['crm-events-sink', 9105, 9105],
    ['crm-events-sink', 9106, 9106],
  ])('%s publishes host port %d (container %d)', (service, host, container) => {
    expect(published(service).get(host)).toBe(container);
  });

  it('publishes each host port once, and the native defaults are the published ones', () => {
    const all = Object.keys(services).flatMap((s) => [...published(s).keys()]);
    expect(new Set(all).size).toBe(all.length);
    expect(new URL(DEFAULTS.DATABASE_URL).port).toBe('5446');
    expect(DEFAULTS.KAFKA_BROKERS).toBe('127.0.0.1:9092');
    expect(DEFAULTS.TEMPORAL_ADDRESS).toBe('127.0.0.1:7233');
    expect(new URL(DEFAULTS.TEMPORAL_UI_URL).port).toBe('8233');
  });

  it('gives every long-running service a healthcheck', () => {
    for (const [name, service] of Object.entries(services)) {
      if (ONE_SHOTS.includes(name)) {
        expect(service.restart).toBe('no');
        continue;
      }
      expect({ name, test: service.healthcheck?.test }).toEqual({ name, test: expect.anything() });
      const test = service.healthcheck!.test;
      expect(Array.isArray(test) ? test[0] : 'CMD-SHELL').toMatch(/^CMD(-SHELL)?$/);
      expect(service.healthcheck!.retries).toBeGreaterThan(0);
    }
    expect(String(services.postgres.healthcheck!.test)).toContain('pg_isready -U crm_events -d crm_events');
    expect(String(services['crm-events-sink'].healthcheck!.test)).toContain('/health');
  });

  it('starts services only after what they need is healthy (or, for one-shots, done)', () => {
    for (const name of Object.keys(services)) {
      for (const [dep, { condition }] of Object.entries(dependsOn(name))) {
        expect(services[dep]).toBeDefined();
        const expected = ONE_SHOTS.includes(dep) ? 'service_completed_successfully' : 'service_healthy';
        expect({ name, dep, condition }).toEqual({ name, dep, condition: expected });
      }
    }
    expect(Object.keys(dependsOn('crm-events-sink')).sort()).toEqual(
      ['kafka', 'postgres', 'temporal', 'temporal-admin-tools'].sort(),
    );
    expect(Object.keys(dependsOn('temporal'))).toEqual(['temporal-db']);
    expect(Object.keys(dependsOn('temporal-ui'))).toEqual(['temporal']);
    // Prometheus and Alertmanager must keep running while the sink is down, or CrmEventsSinkDown could never fire.
    expect(services.prometheus.depends_on).toBeUndefined();
    expect(services.alertmanager.depends_on).toBeUndefined();
  });

  it('gives the sink only variables of .env.example, and a configuration that loads', () => {
    const env = sinkEnv();
    for (const name of Object.keys(env)) expect(Object.keys(DEFAULTS)).toContain(name);
    const example = read('.env.example');
    for (const name of Object.keys(env)) expect(example).toMatch(new RegExp(`^${name}=`, 'm'));

    const config = loadConfig(env);
    expect(config.kafka.brokers).toEqual(['kafka:19092']);
    expect(config.temporal.address).toBe('temporal:7233');
    expect(config.temporal.uiUrl).toBe('http://localhost:8233');
    expect(config.metrics.port).toBe(9105);
    expect(config.api.port).toBe(9106);
    // Auth is on under compose with the operator's secret; without one compose refuses to start. No secret in the repo.
    expect(config.api.jwtSecret).toBe(SHELL.AUTH_JWT_SECRET);
    expect(config.api.authMode).toBe('jwt');
    expect(String(services['crm-events-sink'].environment!.AUTH_JWT_SECRET)).toMatch(/^\$\{AUTH_JWT_SECRET:\?.+\}$/);
    expect(() => sinkEnv({})).toThrow(/AUTH_JWT_SECRET/);
    expect(read('docker-compose.yml')).not.toMatch(/example-only|change-me|AUTH_JWT_SECRET:-/);
  });

  it('points the sink at the compose postgres with its credentials', () => {
    const db = new URL(sinkEnv().DATABASE_URL);
    const pg = services.postgres.environment!;
    expect(db.hostname).toBe('postgres');
    expect(db.port).toBe('5432');
    expect(decodeURIComponent(db.username)).toBe(pg.POSTGRES_USER);
    expect(decodeURIComponent(db.password)).toBe(pg.POSTGRES_PASSWORD);
    expect(db.pathname.slice(1)).toBe(pg.POSTGRES_DB);
    expect([pg.POSTGRES_USER, pg.POSTGRES_PASSWORD, pg.POSTGRES_DB]).toEqual([
      'crm_events',
      'crm_events',
      'crm_events',
    ]);
  });

  it('runs Kafka in KRaft with a listener for the containers and one for the host', () => {
    const env = services.kafka.environment!;
    expect(env.KAFKA_PROCESS_ROLES).toBe('broker,controller');
    expect(String(env.KAFKA_AUTO_CREATE_TOPICS_ENABLE)).toBe('false');
    const advertised = String(env.KAFKA_ADVERTISED_LISTENERS).split(',');
    const addresses = advertised.map((l) => l.replace(/^\w+:\/\//, ''));
    expect(addresses).toContain(sinkEnv().KAFKA_BROKERS); // inside compose
    expect(addresses).toContain(DEFAULTS.KAFKA_BROKERS); // host: tools and a natively run sink
    for (const listener of advertised) {
      expect(String(env.KAFKA_LISTENER_SECURITY_PROTOCOL_MAP)).toContain(`${listener.split('://')[0]}:`);
    }
  });

  it('registers every search attribute the workflows set, as Keyword', () => {
    const source = read('workflows/search-attributes.ts');
    const names = [...source.matchAll(/defineSearchAttributeKey\('(\w+)', SearchAttributeType\.KEYWORD\)/g)].map(
      (m) => m[1],
    );
    expect(names.sort()).toEqual(['CrmEventId', 'CrmReplayKind', 'CrmReplaySource', 'CrmTenantId', 'CrmTopic']);
    const tools = services['temporal-admin-tools'];
    const script = [...(tools.entrypoint ?? []), ...[tools.command ?? []].flat()].join('\n');
    expect(script).toContain('temporal operator search-attribute create');
    expect(script).toContain('--type Keyword');
    for (const name of names) expect(script).toContain(name);
    expect(tools.environment!.TEMPORAL_ADDRESS).toBe(sinkEnv().TEMPORAL_ADDRESS);
  });

  it('mounts the monitoring configuration into Prometheus and Grafana', () => {
    const mounts = (service: string) =>
      (services[service].volumes ?? []).filter((v) => v.startsWith('./')).map((v) => v.split(':').slice(0, 2));
    expect(mounts('prometheus')).toEqual([
      ['./monitoring/prometheus.yml', '/etc/prometheus/prometheus.yml'],
      ['./monitoring/rules', '/etc/prometheus/rules'],
    ]);
    expect(mounts('grafana')).toEqual([
      ['./monitoring/grafana/provisioning', '/etc/grafana/provisioning'],
      ['./monitoring/grafana/dashboards', '/var/lib/grafana/dashboards'],
    ]);
    for (const [host] of [...mounts('prometheus'), ...mounts('grafana')])
      expect(fs.existsSync(path.join(ROOT, host))).toBe(true);
    expect(services.grafana.environment).toMatchObject({
      GF_SECURITY_ADMIN_USER: 'admin',
      GF_SECURITY_ADMIN_PASSWORD: 'admin',
    });
    const provider = parse(read('monitoring/grafana/provisioning/dashboards/dashboards.yml')) as {
      providers: { options: { path: string } }[];
    };
    expect(provider.providers[0].options.path).toBe('/var/lib/grafana/dashboards');
  });

  it('has Prometheus scrape the sink by service name on its published ports', () => {
    const prom = parse(read('monitoring/prometheus.yml')) as {
      scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[];
    };
    const targets = Object.fromEntries(prom.scrape_configs.map((j) => [j.job_name, j.static_configs[0].targets]));
    expect(targets['crm-events-sink']).toEqual([`crm-events-sink:${DEFAULTS.METRICS_PORT}`]);
    expect(targets['crm-events-sink-api']).toEqual([`crm-events-sink:${DEFAULTS.API_PORT}`]);
  });

  it('has Prometheus send its alerts to the alertmanager service, which runs monitoring/alertmanager.yml', () => {
    const prom = parse(read('monitoring/prometheus.yml')) as {
      alerting: { alertmanagers: { static_configs: { targets: string[] }[] }[] };
    };
    expect(prom.alerting.alertmanagers.flatMap((a) => a.static_configs.flatMap((c) => c.targets))).toEqual([
      'alertmanager:9093',
    ]);
    const am = services.alertmanager;
    expect(am.image).toMatch(/^prom\/alertmanager:v0\.\d+\.\d+$/);
    expect(am.volumes).toContain('./monitoring/alertmanager.yml:/etc/alertmanager/alertmanager.yml:ro');
    expect(am.volumes).toContain('alertmanager-data:/alertmanager');
    expect(Object.keys(compose.volumes ?? {})).toContain('alertmanager-data');
    // The default receiver is on the host (docker's host-gateway), where `docker compose` runs.
    expect(interpolate(String(am.environment!.ALERT_WEBHOOK_URL), {})).toBe('http://host.docker.internal:5001/alerts');
    expect(interpolate(String(am.environment!.ALERT_WEBHOOK_URL), { ALERT_WEBHOOK_URL: 'https://x/y' })).toBe(
      'https://x/y',
    );
    expect(am.extra_hosts).toEqual(['host.docker.internal:host-gateway']);
  });

  it("has Alertmanager's entrypoint put ALERT_WEBHOOK_URL in every receiver, in a configuration amtool accepts", () => {
    // The entrypoint script as the container's sh gets it ($$ is compose's escape for $), with its paths moved to a
    // scratch directory and the final exec replaced by amtool's check of the rendered file (Debian's amtool).
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crm-compose-am-'));
    const rendered = path.join(dir, 'alertmanager.yml');
    const url = 'https://hooks.example.com/crm?team=crm&sig=a#b\\c';
    try {
      const script = [services.alertmanager.command ?? []]
        .flat()
        .join('\n')
        .replace(/\$\$/g, '$')
        .replace('/etc/alertmanager/alertmanager.yml', path.join(ROOT, 'monitoring/alertmanager.yml'))
        .replace(/ \/alertmanager\/alertmanager\.yml\n/, ` ${rendered}\n`)
        .replace(/exec \/bin\/alertmanager[\s\S]*$/, `exec amtool check-config ${rendered}`);
      expect(services.alertmanager.entrypoint).toEqual(['/bin/sh', '-c']);
      const run = spawnSync('/bin/sh', ['-c', script], {
        encoding: 'utf8',
        env: { ...process.env, ALERT_WEBHOOK_URL: url },
      });
      expect({ status: run.status, output: `${run.stdout}${run.stderr}` }).toMatchObject({ status: 0 });
      const config = parse(fs.readFileSync(rendered, 'utf8')) as {
        receivers: { webhook_configs: { url: string }[] }[];
      };
      const urls = config.receivers.flatMap((r) => r.webhook_configs.map((w) => w.url));
      expect(urls.length).toBeGreaterThan(0);
      for (const u of urls) expect(u).toBe(url);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('Dockerfile', () => {
  const dockerfile = read('Dockerfile');
  const instructions = dockerfile
    .replace(/\\\n/g, ' ')
    .split('\n')
    .filter((line) => line.trim() && !line.trim().startsWith('#'));
  const last = (keyword: string) => [...instructions].reverse().find((l) => l.startsWith(`${keyword} `)) ?? '';

  it('builds in one stage and runs from a clean one, without dev dependencies', () => {
    expect(instructions.filter((l) => l.startsWith('FROM ')).length).toBeGreaterThanOrEqual(2);
    expect(dockerfile).toMatch(/ARG NODE_IMAGE=node:20/);
    expect(dockerfile).toContain('npm ci');
    expect(dockerfile).toContain('npm run build');
    expect(dockerfile).toMatch(/npm prune --omit=dev/);
    // shared/migrate.ts resolves ../../sql from dist/shared.
    expect(dockerfile).toMatch(/COPY --from=build \/app\/sql \.\/sql/);
    expect(dockerfile).toMatch(/COPY --from=build \/app\/dist \.\/dist/);
  });

  it('runs `crm-events-sink start` as a non-root user with a heap limit, exposing both ports, with a healthcheck', () => {
    const user = last('USER').split(/\s+/)[1];
    expect(user).toBeDefined();
    expect(['root', '0']).not.toContain(user);
    expect(last('EXPOSE').split(/\s+/).slice(1).sort()).toEqual(['9105', '9106']);
    expect(last('HEALTHCHECK')).toContain('/health');
    const bin = JSON.parse(read('package.json')).bin['crm-events-sink'];
    expect(JSON.parse(last('ENTRYPOINT').slice('ENTRYPOINT '.length))).toEqual([
      'node',
      '--max-old-space-size=512',
      bin,
    ]);
    expect(JSON.parse(last('CMD').slice('CMD '.length))).toEqual(['start']);
  });

  it('keeps the local stack, dependencies and build output out of the build context', () => {
    const ignored = read('.dockerignore')
      .split('\n')
      .map((l) => l.trim());
    for (const entry of ['.git', 'node_modules', 'dist', '.stack']) expect(ignored).toContain(entry);
    for (const needed of ['sql', 'shared', 'package.json', 'package-lock.json', 'tsconfig.build.json']) {
      expect(ignored).not.toContain(needed);
    }
  });
});

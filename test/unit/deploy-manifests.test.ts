import fs from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { ROUTE_POLICY } from '../../api/auth/policy';
import { DEFAULTS, loadConfig, type Config } from '../../shared/config';
import { k8sTools, kubeconform, objects, render, ROOT, type K8sObject, type K8sTools } from '../support/k8s';

/**
 * deploy/: the production overlay rendered by kustomize with its real values, checked by kubeconform against the
 * Kubernetes schemas of the oldest and newest version supported, then read for what the schemas cannot know: that
 * each process runs the command, ports, probes and shutdown bound the code has, with resources from the benchmarks.
 */
const read = (file: string) => fs.readFileSync(path.join(ROOT, file), 'utf8');
const OVERLAY = 'deploy/overlays/production';
/** Stand-ins for the Secret (never in the repository), valid as loadConfig wants them. */
const SECRET_VALUES: Record<string, string> = {
  DATABASE_URL: 'postgres://crm_events:from-the-secret@postgres.db.svc:5432/crm_events',
  AUTH_JWT_SECRET: 'a-secret-the-operator-generated-0123456789',
};

let t: K8sTools;
let rendered: string;
let all: K8sObject[];

beforeAll(() => {
  t = k8sTools();
  rendered = render(t.kustomize, OVERLAY);
  all = objects(rendered);
}, 900_000);

const ofKind = (kind: string) => all.filter((o) => o.kind === kind);
const deployment = (component: string) =>
  ofKind('Deployment').find((d) => d.metadata.name === `crm-events-sink-${component}`)!;
const container = (o: K8sObject) => o.spec.template.spec.containers[0];
const configMap = () => ofKind('ConfigMap')[0].data as Record<string, string>;

/** The configuration one container starts with: its ConfigMap, then the Secret's stand-in values. */
function containerConfig(o: K8sObject): Config {
  const c = container(o);
  const fromMap = c.envFrom.map((e: { configMapRef: { name: string } }) => e.configMapRef.name);
  const maps = ofKind('ConfigMap').filter((m) => fromMap.includes(m.metadata.name));
  expect(maps).toHaveLength(fromMap.length);
  const env: Record<string, string> = Object.assign({}, ...maps.map((m) => m.data));
  for (const e of c.env) if (SECRET_VALUES[e.name]) env[e.name] = SECRET_VALUES[e.name];
  return loadConfig(env);
}

describe('kubeconform (schemas from the PyPI wheel kubernetes-validate, offline)', () => {
  it.each([OVERLAY, 'deploy/base'])('%s: every object valid, none skipped, in every Kubernetes version', (dir) => {
    const text = dir === OVERLAY ? rendered : render(t.kustomize, dir);
    const count = objects(text).length;
    for (const version of t.versions) {
      const result = kubeconform(t, text, version);
      expect({ version, ...result.summary, status: result.status, problems: result.resources }).toEqual({
        version,
        valid: count,
        invalid: 0,
        errors: 0,
        skipped: 0,
        status: 0,
        problems: [],
      });
    }
  });

  it('rejects an unknown field, a wrong type and a kind it has no schema for', () => {
    const hpa = ofKind('HorizontalPodAutoscaler')[0];
    const broken = [
      { ...hpa, spec: { ...hpa.spec, maxReplicas: 'six' } },
      { ...ofKind('PodDisruptionBudget')[0], spec: { maxUnavailabel: 1 } },
      { apiVersion: 'monitoring.coreos.com/v1', kind: 'ServiceMonitor', metadata: { name: 'x' }, spec: {} },
    ];
    const result = kubeconform(t, broken.map((o) => JSON.stringify(o)).join('\n---\n'), t.versions[0]);
    expect(result.summary).toEqual({ valid: 0, invalid: 2, errors: 1, skipped: 0 });
    const why = Object.fromEntries(result.resources.map((r) => [r.kind, r.msg]));
    expect(why).toEqual({
      HorizontalPodAutoscaler: expect.stringMatching(/maxReplicas': got string, want integer/),
      PodDisruptionBudget: expect.stringMatching(/additional properties 'maxUnavailabel' not allowed/),
      ServiceMonitor: 'could not find schema for ServiceMonitor',
    });
  });
});

describe('the processes', () => {
  it('one Deployment per long-running command of the CLI, the migration Job runs `migrate`', () => {
    const main = read('cli/main.ts');
    const single = [...main.matchAll(/^ {2}(\w+): \(\) => serve\(\['(\w+)'\]\)/gm)].map((m) => m[1]);
    expect(single.sort()).toEqual(['api', 'ingest', 'worker']);
    for (const command of single) expect(container(deployment(command)).args).toEqual([command]);
    expect(ofKind('Deployment')).toHaveLength(single.length);
    expect(main).toMatch(/^ {2}migrate: \(\) => migrateCommand\(\)/m);
    expect(ofKind('Job').map((j) => container(j).args)).toEqual([['migrate']]);
  });

  it('every container starts with a valid configuration from the ConfigMap and the Secret, naming only known variables', () => {
    const unknown = Object.keys(configMap()).filter((k) => !(k in DEFAULTS));
    expect(unknown).toEqual([]);
    for (const o of [...ofKind('Deployment'), ...ofKind('Job')]) {
      const config = containerConfig(o);
      expect({ name: o.metadata.name, brokers: config.kafka.brokers.length, auth: config.api.authMode }).toEqual({
        name: o.metadata.name,
        brokers: 3,
        auth: 'jwt',
      });
    }
  });

  it('probes: the API /healthz and /health on its port, ingest and worker /healthz on the metrics port', () => {
    const config = containerConfig(deployment('api'));
    const probe = (component: string, kind: 'livenessProbe' | 'readinessProbe') => {
      const c = container(deployment(component));
      const port = c.ports.find((p: { name: string }) => p.name === c[kind].httpGet.port).containerPort;
      return `${c[kind].httpGet.path} :${port}`;
    };
    expect(probe('api', 'livenessProbe')).toBe(`/healthz :${config.api.port}`);
    expect(probe('api', 'readinessProbe')).toBe(`/health :${config.api.port}`);
    for (const component of ['ingest', 'worker']) {
      expect(probe(component, 'livenessProbe')).toBe(`/healthz :${config.metrics.port}`);
      expect(probe(component, 'readinessProbe')).toBe(`/healthz :${config.metrics.port}`);
    }
    const routes = ROUTE_POLICY.map((p) => `${p.route} ${p.role}`);
    expect(routes).toEqual(expect.arrayContaining(['GET /health public', 'GET /healthz public']));
    expect(read('shared/metrics-server.ts')).toContain("req.url === '/healthz'");
  });

  it('the grace period is above preStop + SHUTDOWN_TIMEOUT (the process is gone by then, cli/runtime.ts)', () => {
    for (const d of ofKind('Deployment')) {
      const preStop = container(d).lifecycle?.preStop?.exec?.command ?? [];
      const preStopSeconds = preStop[0] === 'sleep' ? Number(preStop[1]) : 0;
      const needed = preStopSeconds + containerConfig(d).shutdownTimeoutMs / 1000;
      expect({ name: d.metadata.name, ok: d.spec.template.spec.terminationGracePeriodSeconds > needed }).toEqual({
        name: d.metadata.name,
        ok: true,
      });
    }
  });

  it('memory requests cover the peak RSS the benchmarks measured (ingest alone; ingest and API under stream load)', () => {
    const mebibytes = (q: string) => Number(/^(\d+)Mi$/.exec(q)![1]);
    const request = (component: string) => mebibytes(container(deployment(component)).resources.requests.memory);
    const ingest = JSON.parse(read('bench/results/ingest.json')) as { peakRssMb: { max: number } };
    const heapFlag = /--max-old-space-size=\d+/.exec(read('bench/support/process.ts'))![0];
    expect(container(deployment('ingest')).command).toContain(heapFlag);
    expect(request('ingest')).toBeGreaterThanOrEqual(ingest.peakRssMb.max);
    const pool = JSON.parse(read('bench/results/api-pool.json')) as {
      raw: { mode: string; load: boolean; peakRssMb: number }[];
    };
    const underLoad = pool.raw.filter((r) => r.mode === 'dedicated' && r.load).map((r) => r.peakRssMb);
    expect(underLoad.length).toBeGreaterThan(0);
    expect(request('api')).toBeGreaterThanOrEqual(Math.max(...underLoad));
    for (const o of [...ofKind('Deployment'), ...ofKind('Job')]) {
      const r = container(o).resources;
      expect({
        name: o.metadata.name,
        cpu: !!r.requests.cpu,
        memory: !!r.requests.memory,
        limit: !!r.limits.memory,
      }).toEqual({ name: o.metadata.name, cpu: true, memory: true, limit: true });
    }
  });
});

describe('availability and scaling', () => {
  const selects = (selector: Record<string, string>, labels: Record<string, string>) =>
    Object.entries(selector).every(([k, v]) => labels[k] === v);

  it('each Deployment has exactly one PodDisruptionBudget, which selects only its pods', () => {
    for (const d of ofKind('Deployment')) {
      const labels = d.spec.template.metadata.labels;
      const pdbs = ofKind('PodDisruptionBudget').filter((p) => selects(p.spec.selector.matchLabels, labels));
      expect({ name: d.metadata.name, pdbs: pdbs.length }).toEqual({ name: d.metadata.name, pdbs: 1 });
    }
    expect(ofKind('PodDisruptionBudget')).toHaveLength(ofKind('Deployment').length);
  });

  it('the HPA scales ingest on the group lag that prometheus-adapter derives from an exported metric', () => {
    const [hpa] = ofKind('HorizontalPodAutoscaler');
    expect(hpa.spec.scaleTargetRef).toMatchObject({ kind: 'Deployment', name: 'crm-events-sink-ingest' });
    expect(deployment('ingest').spec.replicas).toBeUndefined();
    const adapter = parse(read('deploy/prometheus-adapter/rules.yaml')) as {
      externalRules: { seriesQuery: string; name: { as: string } }[];
    };
    const [rule] = adapter.externalRules;
    expect(hpa.spec.metrics).toEqual([expect.objectContaining({ type: 'External' })]);
    expect(hpa.spec.metrics[0].external.metric.name).toBe(rule.name.as);
    const source = /^(\w+)\{/.exec(rule.seriesQuery)![1];
    expect(read('shared/metrics.ts')).toContain(`'${source}'`);
    // More consumers than partitions sit idle in the group.
    const config = containerConfig(deployment('ingest'));
    expect(hpa.spec.maxReplicas).toBeLessThanOrEqual(config.kafka.topics.length * config.kafka.topicPartitions);
    expect(hpa.spec.minReplicas).toBeGreaterThanOrEqual(2);
  });
});

describe('secrets', () => {
  it('none in the rendered manifests; every key read is listed in deploy/secret.example.env, which has no values', () => {
    expect(ofKind('Secret')).toEqual([]);
    const example = read('deploy/secret.example.env')
      .split('\n')
      .filter((line) => line && !line.startsWith('#'));
    expect(example.filter((line) => !line.endsWith('='))).toEqual([]);
    const listed = example.map((line) => line.slice(0, -1)).sort();
    for (const o of [...ofKind('Deployment'), ...ofKind('Job')]) {
      const refs = container(o).env.map((e: { valueFrom: { secretKeyRef: { name: string; key: string } } }) => ({
        secret: e.valueFrom.secretKeyRef.name,
        key: e.valueFrom.secretKeyRef.key,
      }));
      expect(refs.map((r: { key: string }) => r.key).sort()).toEqual(listed);
      expect(new Set(refs.map((r: { secret: string }) => r.secret))).toEqual(new Set(['crm-events-sink']));
    }
    expect(rendered).not.toContain(SECRET_VALUES.AUTH_JWT_SECRET);
  });
});

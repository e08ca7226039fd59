import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import client from 'prom-client';
import { createLogger } from '../../shared/logger';
import { startMetricsServer } from '../../shared/metrics-server';

/**
 * The metrics port is the only HTTP port of an ingest or worker process, so their Kubernetes liveness probe
 * (deploy/base) asks it for /healthz. That answer must not depend on what /metrics collects: a collector that reads
 * Postgres fails while Postgres is away, and a liveness probe failing then would restart a process that is rightly
 * paused, waiting for it.
 */
const registry = new client.Registry();
let failing = false;
new client.Gauge({
  name: 'test_reads_a_dependency',
  help: 'a gauge whose collect fails while its dependency is down',
  registers: [registry],
  collect() {
    if (failing) throw new Error('dependency down');
    this.set(1);
  },
});

let server: http.Server;
let base: string;

beforeAll(async () => {
  server = await startMetricsServer(registry, '127.0.0.1', 0, createLogger('silent'));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => new Promise((resolve) => server.close(resolve)));

afterEach(() => {
  failing = false;
});

it('serves /metrics and /healthz', async () => {
  const metrics = await fetch(`${base}/metrics`);
  expect(metrics.status).toBe(200);
  expect(await metrics.text()).toContain('test_reads_a_dependency 1');
  const healthz = await fetch(`${base}/healthz`);
  expect(healthz.status).toBe(200);
  expect(await healthz.json()).toEqual({ ok: true });
});

it('/healthz stays 200 while collecting the metrics fails', async () => {
  failing = true;
  expect((await fetch(`${base}/metrics`)).status).toBe(500);
  expect((await fetch(`${base}/healthz`)).status).toBe(200);
});

it('anything else is a 404 naming the paths', async () => {
  const res = await fetch(`${base}/health`);
  expect(res.status).toBe(404);
  expect(await res.text()).toContain('/metrics');
  expect((await fetch(`${base}/healthz`, { method: 'POST' })).status).toBe(404);
});

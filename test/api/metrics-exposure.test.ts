import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createLogger } from '../../shared/logger';
import { startMetricsServer } from '../../shared/metrics-server';
import { createApiEnv, produceJournaled, type ApiEnv } from '../support/api';
import { uniqueSuffix } from '../support/env';

/**
 * Issue 11: `/metrics` on the API port listed every tenant id to anyone who could reach it. As `npm start` runs it,
 * ingest and API share one process and one set of metrics; ingest labels its counters by tenant. The API's
 * /metrics, public so that Prometheus scrapes it without a token, serves only the API's own series (HTTP and live
 * stream, no tenant label); the tenant series stay on the metrics port (METRICS_PORT, :9105), as the seeds have them.
 */
const SECRET = 'metrics-exposure-secret-0123456789';
const tenant = `tenant-${uniqueSuffix()}`;
let env: ApiEnv;
let api: string;
let metricsServer: http.Server;
let metricsPort: string;

beforeAll(async () => {
  env = await createApiEnv('api-metrics', { worker: false, env: { AUTH_JWT_SECRET: SECRET } });
  await produceJournaled(env.h, env.h.topics.leads, [{ tenant_id: tenant, name: 'counted by tenant' }]);
  await env.app.listen({ host: '127.0.0.1', port: 0 });
  api = `http://127.0.0.1:${(env.app.server.address() as AddressInfo).port}`;
  metricsServer = await startMetricsServer(env.h.metrics.registry, '127.0.0.1', 0, createLogger('silent'));
  metricsPort = `http://127.0.0.1:${(metricsServer.address() as AddressInfo).port}`;
  await fetch(`${api}/healthz`); // one request, so the HTTP series have a sample
}, 120_000);

afterAll(async () => {
  metricsServer?.close();
  await env?.close();
});

it('the metrics port has the tenant-labelled ingest series (the seeds read them there)', async () => {
  const body = await (await fetch(`${metricsPort}/metrics`)).text();
  expect(body).toContain(`crm_events_ingested_total{tenant_id="${tenant}",topic="${env.h.topics.leads}"} 1`);
  expect(body).toContain(`crm_events_persisted_total{tenant_id="${tenant}"`);
});

it("the API's /metrics, without a token, has its own series and no tenant id", async () => {
  const res = await fetch(`${api}/metrics`);
  expect(res.status).toBe(200);
  const body = await res.text();
  for (const name of [
    'crm_events_http_requests_total',
    'crm_events_http_request_duration_seconds',
    'crm_events_sse_clients',
    'crm_events_messages_total',
    'crm_events_sse_dropped_total',
  ]) {
    expect({ name, present: body.includes(`# TYPE ${name} `) }).toEqual({ name, present: true });
  }
  expect(body).toContain('route="/healthz"');
  expect(body).not.toContain(tenant);
  expect(body).not.toContain('tenant_id');
});

import http from 'node:http';
import type { Registry } from 'prom-client';
import type { Logger } from './logger';

/**
 * Serves GET /metrics on its own port (:9105), apart from the API, so scraping never queues behind API traffic, and
 * GET /healthz there: liveness of an ingest or worker process, which has no API port. It answers while the event loop
 * runs and reads nothing, so an outage of Postgres or Kafka (which the process rides out, paused) never fails it.
 */
export async function startMetricsServer(
  registry: Registry,
  host: string,
  port: number,
  log: Logger,
): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
      return;
    }
    if (req.method !== 'GET' || (req.url !== '/metrics' && !req.url?.startsWith('/metrics?'))) {
      res
        .writeHead(404, { 'content-type': 'application/json' })
        .end('{"error":"Not Found","message":"try /metrics or /healthz"}');
      return;
    }
    registry.metrics().then(
      (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
      (err: Error) => {
        log.error({ err }, 'metrics collection failed');
        res.writeHead(500).end();
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  log.info({ port: (server.address() as { port: number }).port }, 'Metrics listening');
  return server;
}

/**
 * Stops the metrics server: no new connections, and every open one dropped at once. close() alone waits for a
 * connection whose request has begun and not finished (a scraper paused mid-request, or anyone sending half a
 * request) until node's header timeout, past the process's SHUTDOWN_TIMEOUT. A scrape cut short is just retried.
 */
export function stopMetricsServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

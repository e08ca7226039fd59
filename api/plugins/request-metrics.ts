import fp from 'fastify-plugin';
import type { Metrics } from '../../shared/metrics';

/**
 * Counts and times every request by its route pattern (never the raw URL, which would explode cardinality), and
 * serves GET /metrics with the API's own series only: it needs no token (Prometheus scrapes it), so nothing labelled
 * by tenant may be there; the process's other series are on the metrics port.
 */
export default fp<{ metrics: Metrics }>(
  async (app, { metrics }) => {
    app.addHook('onResponse', async (request, reply) => {
      const route = request.routeOptions.url ?? 'unmatched';
      const labels = { method: request.method, route };
      metrics.httpRequests.inc({ ...labels, status: String(reply.statusCode) });
      metrics.httpDuration.observe(labels, reply.elapsedTime / 1000);
    });
    app.get('/metrics', { schema: { hide: true } }, async (_request, reply) =>
      reply.type(metrics.apiRegistry.contentType).send(await metrics.apiRegistry.metrics()),
    );
  },
  { name: 'request-metrics' },
);

import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';

const Check = Type.Object({
  status: Type.Union([Type.Literal('up'), Type.Literal('down')]),
  error: Type.Optional(Type.String()),
  latency_ms: Type.Number(),
});
const Health = Type.Object({
  status: Type.Union([Type.Literal('healthy'), Type.Literal('degraded')]),
  service: Type.Literal('crm-events-sink'),
  checks: Type.Record(Type.String(), Check),
});

export type HealthCheck = () => Promise<unknown>;

const CHECK_TIMEOUT_MS = 2000;

/** GET /health: healthy when every dependency answers; 503 "degraded" naming the one that does not. */
const healthRoutes: FastifyPluginAsyncTypebox<{ checks: Record<string, HealthCheck> }> = async (app, { checks }) => {
  app.get(
    '/health',
    { schema: { tags: ['health'], summary: 'Service and dependency health', response: { 200: Health, 503: Health } } },
    async (_request, reply) => {
      const results = await Promise.all(
        Object.entries(checks).map(async ([name, check]) => [name, await runCheck(check)] as const),
      );
      const healthy = results.every(([, r]) => r.status === 'up');
      return reply.status(healthy ? 200 : 503).send({
        status: healthy ? 'healthy' : 'degraded',
        service: 'crm-events-sink',
        checks: Object.fromEntries(results),
      });
    },
  );
};

async function runCheck(check: HealthCheck) {
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      check(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS);
      }),
    ]);
    return { status: 'up' as const, latency_ms: Date.now() - started };
  } catch (err) {
    return { status: 'down' as const, error: (err as Error).message, latency_ms: Date.now() - started };
  } finally {
    clearTimeout(timer);
  }
}

export default healthRoutes;

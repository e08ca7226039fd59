import fp from 'fastify-plugin';
import { httpError } from '../http-error';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Counted against the per-token replay budget. */
    replayLimited?: boolean;
  }
}

/**
 * Replay requests per token (or client address when auth is off) per minute, a sliding one-minute window in
 * memory. Beyond it: 429 with Retry-After.
 */
export default fp<{ perMinute: number }>(
  async (app, { perMinute }) => {
    const windows = new Map<string, number[]>();
    app.addHook('preHandler', async (request, reply) => {
      if (!request.routeOptions.config?.replayLimited) return;
      const key = request.principal.subject === 'anonymous' ? `ip:${request.ip}` : `sub:${request.principal.subject}`;
      const now = Date.now();
      const recent = (windows.get(key) ?? []).filter((t) => t > now - 60_000);
      if (recent.length >= perMinute) {
        reply.header('retry-after', String(Math.ceil((recent[0] + 60_000 - now) / 1000)));
        throw httpError(429, `Replay rate limit reached: at most ${perMinute} replay requests per minute per token`);
      }
      recent.push(now);
      windows.set(key, recent);
    });
  },
  { name: 'replay-rate-limit', dependencies: ['auth'] },
);

import fp from 'fastify-plugin';
import type { Pool } from '../../shared/db';
import { claimIdempotencyKey, pruneApiLimits, takeRateSlot, type IdempotencyRecord } from '../../repository/api-limits';
import { httpError } from '../http-error';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Counted against the per-token replay budget. */
    replayLimited?: boolean;
  }
  interface FastifyInstance {
    /** Idempotency-Key records, shared by every API instance on the database. */
    idempotencyKeys: IdempotencyKeys;
  }
}

/** The Idempotency-Key records startForRequest consults. */
export interface IdempotencyKeys {
  claim(keyHash: string, workflowId: string, fingerprint: string): Promise<IdempotencyRecord>;
}

export interface ApiLimitsOptions {
  perMinute: number;
  pool: Pool;
  idempotencyKeyTtlSeconds: number;
  /** How often expired rows are deleted (default one minute). */
  pruneEveryMs?: number;
}

/**
 * Replay requests per token (or client address when auth is off) per minute, a sliding one-minute window kept in
 * Postgres so that every API instance on one database draws on one budget. Beyond it: 429 with Retry-After. Also
 * holds the Idempotency-Key records, and prunes both on a timer.
 */
export default fp<ApiLimitsOptions>(
  async (app, { perMinute, pool, idempotencyKeyTtlSeconds, pruneEveryMs = 60_000 }) => {
    app.decorate('idempotencyKeys', {
      claim: (keyHash, workflowId, fingerprint) => claimIdempotencyKey(pool, keyHash, workflowId, fingerprint),
    } satisfies IdempotencyKeys);

    app.addHook('preHandler', async (request, reply) => {
      if (!request.routeOptions.config?.replayLimited) return;
      const key = request.principal.subject === 'anonymous' ? `ip:${request.ip}` : `sub:${request.principal.subject}`;
      const decision = await takeRateSlot(pool, key, perMinute);
      if (!decision.admitted) {
        reply.header('retry-after', String(decision.retryAfterSeconds));
        throw httpError(429, `Replay rate limit reached: at most ${perMinute} replay requests per minute per token`);
      }
    });

    // Every instance prunes; the deletes are idempotent and bounded, so several doing it at once only repeat work.
    const prune = () =>
      pruneApiLimits(pool, idempotencyKeyTtlSeconds).catch((err: Error) =>
        app.log.warn({ err: err.message }, 'Pruning rate-limit windows and Idempotency-Keys failed; retrying later'),
      );
    const timer = setInterval(() => void prune(), pruneEveryMs);
    timer.unref();
    app.addHook('onClose', async () => clearInterval(timer));
  },
  { name: 'replay-rate-limit', dependencies: ['auth'] },
);

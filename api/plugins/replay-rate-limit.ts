import fp from 'fastify-plugin';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Pool } from '../../shared/db';
import {
  claimIdempotencyKey,
  giveBackRateSlot,
  pruneApiLimits,
  takeRateSlot,
  type IdempotencyRecord,
} from '../../repository/api-limits';
import { settleWithin } from '../../shared/timeout';
import { httpError } from '../http-error';
import { answerSaysNothingStarted } from '../start-workflow';

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
 * How long an answer that started nothing waits for its slot to be given back before it goes out anyway: an answer
 * the close gives has 200 ms to be written (answer-at-close.ts), and the answer matters more than the slot.
 */
const GIVE_BACK_WAIT_MS = 100;

/**
 * Replay requests per token (or client address when auth is off) per minute, a sliding one-minute window kept in
 * Postgres so that every API instance on one database draws on one budget. Beyond it: 429 with Retry-After. A request
 * whose answer says it started nothing (answerSaysNothingStarted: a 503 "send it again" before its start) gives its
 * slot back before that answer goes out, so that sending it again is counted once. Also holds the
 * Idempotency-Key records, and prunes both on a timer.
 */
export default fp<ApiLimitsOptions>(
  async (app, { perMinute, pool, idempotencyKeyTtlSeconds, pruneEveryMs = 60_000 }) => {
    app.decorate('idempotencyKeys', {
      claim: (keyHash, workflowId, fingerprint) => claimIdempotencyKey(pool, keyHash, workflowId, fingerprint),
    } satisfies IdempotencyKeys);

    // The slot each admitted request took, until its answer decides whether it keeps it.
    const taken = new WeakMap<FastifyRequest, { caller: string; hit: string }>();
    const settle = async (request: FastifyRequest, reply: FastifyReply) => {
      const slot = taken.get(request);
      if (!slot || !answerSaysNothingStarted(request, reply.statusCode)) return;
      taken.delete(request);
      const givenBack = giveBackRateSlot(pool, slot.caller, slot.hit);
      const outcome = await settleWithin(givenBack, GIVE_BACK_WAIT_MS);
      if (outcome instanceof Error || outcome === 'timeout') {
        request.log.warn(
          { err: outcome instanceof Error ? outcome.message : undefined },
          `Giving back the replay rate slot of a request that started nothing ${outcome === 'timeout' ? 'is slow' : 'failed'}; answering all the same`,
        );
      }
    };

    app.addHook('preHandler', async (request, reply) => {
      if (!request.routeOptions.config?.replayLimited || reply.sent) return;
      const caller =
        request.principal.subject === 'anonymous' ? `ip:${request.ip}` : `sub:${request.principal.subject}`;
      const decision = await takeRateSlot(pool, caller, perMinute);
      if (!decision.admitted) {
        reply.header('retry-after', String(decision.retryAfterSeconds));
        throw httpError(429, `Replay rate limit reached: at most ${perMinute} replay requests per minute per token`);
      }
      taken.set(request, { caller, hit: decision.hit });
      // The close may have answered while the slot was being taken.
      if (reply.sent) await settle(request, reply);
    });
    app.addHook('onSend', async (request, reply, payload) => {
      await settle(request, reply);
      return payload;
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

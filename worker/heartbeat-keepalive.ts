import type { Context } from '@temporalio/activity';
import type { ActivityInterceptorsFactory } from '@temporalio/worker';

/** How often at most a running activity with a heartbeat timeout heartbeats again (a third of its timeout if less). */
export const KEEPALIVE_MS = 5_000;

/**
 * Keeps an activity with a heartbeat timeout (page activities: 30 s) alive for as long as it runs in a live process:
 * every KEEPALIVE_MS it heartbeats again the details it last heartbeated (the previous attempt's until it has), so the
 * server ends an attempt at its start-to-close timeout, which its sends settle before (worker/send-attempt.ts), or
 * when its process or event loop is gone, never while it waits for something this process will finish. Without it a
 * page waiting for a barrier holder slot or for its previous attempt's send heartbeated nothing, was timed out, never
 * heard of it (a timeout reaches an activity only in a heartbeat's answer) and sent the page beside its retries
 * (attack45-barrier-slot-wait-without-heartbeat, attack45-per-key-wait-without-heartbeat). The heartbeat timeout
 * still finds a dead or frozen worker.
 */
export const heartbeatKeepaliveInterceptor: ActivityInterceptorsFactory = (ctx) => ({
  inbound: {
    async execute(input, next) {
      const timeoutMs = ctx.info.heartbeatTimeoutMs;
      if (!timeoutMs) return next(input);
      let last: unknown = ctx.info.heartbeatDetails;
      const beat = ctx.heartbeat;
      // The SDK's Context holds heartbeat as an own, writable property: what the activity heartbeats is seen here.
      (ctx as { heartbeat: Context['heartbeat'] }).heartbeat = (details?: unknown) => {
        last = details;
        beat(details);
      };
      const keeping = setInterval(
        () => ctx.cancellationSignal.aborted || beat(last),
        Math.min(KEEPALIVE_MS, Math.floor(timeoutMs / 3)),
      );
      try {
        return await next(input);
      } finally {
        clearInterval(keeping);
      }
    },
  },
});

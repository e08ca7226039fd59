import type { Context, Info } from '@temporalio/activity';
import type { ActivityInterceptorsFactory } from '@temporalio/worker';
import { SEND_LEASE_MS, withSendAttempt, type SendAttempt } from '../shared/kafka';
import { askServerOf, beatDetails, leaseAttempt, leaseHeartbeatTimeoutMs } from './attempt-lease';

/**
 * How long before its start-to-close timeout an attempt's sends must have settled: the worker starts the timeout when
 * it starts the activity, the server a little earlier (when it handed the task out), and the retry may start as soon
 * as the server's timeout and the retry policy's first interval (1 s) have passed.
 */
export const ATTEMPT_END_MARGIN_MS = 5_000;

/** performance.now() by which the sends of an attempt started at `startedAt` must have settled; undefined: no end. */
export function attemptSettleBy(
  info: Pick<Info, 'startToCloseTimeoutMs'>,
  startedAt = performance.now(),
): number | undefined {
  return info.startToCloseTimeoutMs > 0 ? startedAt + info.startToCloseTimeoutMs - ATTEMPT_END_MARGIN_MS : undefined;
}

/** How often at most a page's send keeps its attempt alive (a third of its heartbeat timeout if less). */
export const KEEPALIVE_MS = 5_000;

/**
 * Binds every replay-producer send an activity makes to its attempt (shared/kafka.ts withSendAttempt): its
 * cancellation signal, and its end. Without it a commit left unanswered for longer than the attempt (a coordinator
 * frozen as the EndTxn was written, answered at the re-ask) landed after the attempt's retry had sent the page again:
 * the page twice in the topic (attack43-commit-outlives-activity-timeout). An activity with a heartbeat timeout also
 * gets a keepAlive, which heartbeats again the details it last heartbeated (the previous attempt's until it has its
 * own), used while a page's send is under way (keepingAttemptAlive), and, where the worker has a client, a lease
 * (worker/attempt-lease.ts): its sends go only within the life the server has confirmed, and end when the server
 * says the attempt is over.
 */
export const sendAttemptInterceptor: ActivityInterceptorsFactory = (ctx) => {
  const heartbeats = heartbeatsOf(ctx);
  return {
    inbound: {
      execute: (input, next) =>
        withSendAttempt({ signal: ctx.cancellationSignal, settleBy: attemptSettleBy(ctx.info), ...heartbeats }, () =>
          next(input),
        ),
    },
  };
};

function heartbeatsOf(ctx: Context): Pick<SendAttempt, 'keepAlive' | 'keepAliveMs' | 'lease' | 'signal'> {
  const timeoutMs = ctx.info.heartbeatTimeoutMs;
  if (!timeoutMs) return {};
  const keepAliveMs = Math.min(KEEPALIVE_MS, Math.floor(timeoutMs / 3));
  const beat = ctx.heartbeat;
  const ask = askServerOf(ctx);
  // The SDK's Context holds heartbeat and info as own, writable properties: what the activity heartbeats is seen here,
  // and it reads its previous attempt's details as it heartbeated them.
  const writable = ctx as { heartbeat: Context['heartbeat']; info: Info };
  // An attempt scheduled with a heartbeat timeout too short for a send's lease (a page scheduled before the upgrade
  // that lengthened it, 30 s then) sends as before the lease, on its start-to-close bound alone: refused, its pages never
  // went out (test/unit/attack47-page-scheduled-before-deploy.test.ts).
  if (ask && timeoutMs >= leaseHeartbeatTimeoutMs(SEND_LEASE_MS)) {
    const leased = leaseAttempt(ctx, beat, ask);
    writable.info = { ...ctx.info, heartbeatDetails: beatDetails(ctx.info.heartbeatDetails) };
    writable.heartbeat = leased.heartbeat;
    return { keepAlive: leased.keepAlive, keepAliveMs, lease: leased.lease, signal: leased.signal };
  }
  let last: unknown = ctx.info.heartbeatDetails;
  writable.heartbeat = (details?: unknown) => {
    last = details;
    beat(details);
  };
  return { keepAlive: () => beat(last), keepAliveMs };
}

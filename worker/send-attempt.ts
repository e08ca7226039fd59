import type { Info } from '@temporalio/activity';
import type { ActivityInterceptorsFactory } from '@temporalio/worker';
import { withSendAttempt } from '../shared/kafka';

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

/**
 * Binds every replay-producer send an activity makes to its attempt (shared/kafka.ts withSendAttempt): its
 * cancellation signal, and its end. Without it a commit left unanswered for longer than the attempt (a coordinator
 * frozen as the EndTxn was written, answered at the re-ask) landed after the attempt's retry had sent the page again:
 * the page twice in the topic (attack43-commit-outlives-activity-timeout).
 */
export const sendAttemptInterceptor: ActivityInterceptorsFactory = (ctx) => ({
  inbound: {
    execute: (input, next) =>
      withSendAttempt({ signal: ctx.cancellationSignal, settleBy: attemptSettleBy(ctx.info) }, () => next(input)),
  },
});

import { ApplicationFailure } from '@temporalio/activity';
import type { ActivityInboundCallsInterceptor, ActivityInterceptorsFactory } from '@temporalio/worker';
import type { PermanentFailure } from '../journal/kinds';
import { deterministicPgError } from '../shared/db';

/** The failure type of an activity whose statement Postgres refuses for the data it reads. */
export const UNPROCESSABLE_DATA: PermanentFailure = 'UnprocessableData';

/**
 * The error an activity ends with: a Postgres error that the same statement would raise again on every attempt
 * (shared/db.ts, deterministicPgError) becomes a non-retryable failure naming its SQLSTATE and Postgres's message;
 * any other error is left as it is, to be retried by the activity's retry policy.
 */
export function withoutRetryIfDeterministic(err: unknown): unknown {
  const refused = deterministicPgError(err);
  if (!refused) return err;
  return ApplicationFailure.create({
    message: `Postgres refuses this statement for the data it reads, on every attempt: ${refused.message} (SQLSTATE ${refused.sqlstate}, ${refused.kind})`,
    type: UNPROCESSABLE_DATA,
    nonRetryable: true,
    cause: err instanceof Error ? err : undefined,
  });
}

const inbound: ActivityInboundCallsInterceptor = {
  async execute(input, next) {
    try {
      return await next(input);
    } catch (err) {
      throw withoutRetryIfDeterministic(err);
    }
  },
};

/**
 * Without it, an activity whose query Postgres refuses for the data (a `$.**` payload filter over a payload nested too
 * deep, a value a cast cannot take) would be retried with backoff for as long as its retry policy allows, forever for
 * page activities, and its workflow would never end.
 */
export const deterministicFailuresInterceptor: ActivityInterceptorsFactory = () => ({ inbound });

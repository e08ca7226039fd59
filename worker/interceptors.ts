import type { ActivityInterceptorsFactory } from '@temporalio/worker';
import { deterministicFailuresInterceptor } from './deterministic-failures';
import { sendAttemptInterceptor } from './send-attempt';

/**
 * Activity interceptors of the replay worker: a statement Postgres refuses for the data it reads fails its activity at
 * once instead of being retried; every Kafka send settles within its attempt, which is kept alive meanwhile.
 */
export const activityInterceptors: ActivityInterceptorsFactory[] = [
  deterministicFailuresInterceptor,
  sendAttemptInterceptor,
];

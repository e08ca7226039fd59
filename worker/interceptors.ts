import type { ActivityInterceptorsFactory } from '@temporalio/worker';
import { deterministicFailuresInterceptor } from './deterministic-failures';
import { heartbeatKeepaliveInterceptor } from './heartbeat-keepalive';
import { sendAttemptInterceptor } from './send-attempt';

/**
 * Activity interceptors of the replay worker: a statement Postgres refuses for the data it reads fails its activity at
 * once instead of being retried; an attempt with a heartbeat timeout is kept alive while it runs, and every Kafka send
 * settles within it.
 */
export const activityInterceptors: ActivityInterceptorsFactory[] = [
  deterministicFailuresInterceptor,
  heartbeatKeepaliveInterceptor,
  sendAttemptInterceptor,
];

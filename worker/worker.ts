import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import type { Config } from '../shared/config';
import type { Logger } from '../shared/logger';
import { createActivities, type ActivityDeps } from '../activities';
import { activityInterceptors } from './deterministic-failures';

export interface ReplayWorkerOptions {
  connection: NativeConnection;
  config: Pick<Config, 'temporal'> & Partial<Pick<Config, 'shutdownTimeoutMs'>>;
  deps: ActivityDeps;
  /** Pre-bundled workflow code (tests bundle once per file); otherwise bundled from workflows/ at start. */
  workflowBundle?: WorkerOptions['workflowBundle'];
}

/** How long running activities may go on after a shutdown began before they are cancelled. */
const SHUTDOWN_GRACE_MS = 5000;

/** The worker of the replay task queue: every workflow in workflows/, activities bound to the injected deps. */
export async function createReplayWorker({ connection, config, deps, workflowBundle }: ReplayWorkerOptions) {
  return Worker.create({
    connection,
    namespace: config.temporal.namespace,
    taskQueue: config.temporal.taskQueue,
    activities: createActivities(deps),
    // A statement Postgres refuses for the data it reads fails its activity at once instead of being retried.
    interceptors: { activity: activityInterceptors },
    ...(workflowBundle ? { workflowBundle } : { workflowsPath: require.resolve('../workflows') }),
    maxConcurrentActivityTaskExecutions: 20,
    // At shutdown, activities get a few seconds to finish, then are cancelled (publishing honours that at once).
    // The forced stop comes before SHUTDOWN_TIMEOUT, so that the worker's own error is logged before the exit.
    shutdownGraceTime: SHUTDOWN_GRACE_MS,
    ...(config.shutdownTimeoutMs
      ? { shutdownForceTime: Math.max(SHUTDOWN_GRACE_MS + 1000, Math.floor(config.shutdownTimeoutMs * 0.8)) }
      : {}),
  });
}

export async function connectWorker(config: Pick<Config, 'temporal'>, log: Logger): Promise<NativeConnection> {
  const connection = await NativeConnection.connect({ address: config.temporal.address });
  log.info({ address: config.temporal.address, namespace: config.temporal.namespace }, 'Connected to Temporal');
  return connection;
}

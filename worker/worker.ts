import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import type { Config } from '../shared/config';
import type { Logger } from '../shared/logger';
import { createActivities, type ActivityDeps } from '../activities';

export interface ReplayWorkerOptions {
  connection: NativeConnection;
  config: Pick<Config, 'temporal'>;
  deps: ActivityDeps;
  /** Pre-bundled workflow code (tests bundle once per file); otherwise bundled from workflows/ at start. */
  workflowBundle?: WorkerOptions['workflowBundle'];
}

/** The worker of the replay task queue: every workflow in workflows/, activities bound to the injected deps. */
export async function createReplayWorker({ connection, config, deps, workflowBundle }: ReplayWorkerOptions) {
  return Worker.create({
    connection,
    namespace: config.temporal.namespace,
    taskQueue: config.temporal.taskQueue,
    activities: createActivities(deps),
    ...(workflowBundle ? { workflowBundle } : { workflowsPath: require.resolve('../workflows') }),
    maxConcurrentActivityTaskExecutions: 20,
  });
}

export async function connectWorker(config: Pick<Config, 'temporal'>, log: Logger): Promise<NativeConnection> {
  const connection = await NativeConnection.connect({ address: config.temporal.address });
  log.info({ address: config.temporal.address, namespace: config.temporal.namespace }, 'Connected to Temporal');
  return connection;
}

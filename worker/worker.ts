import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import type { Config } from '../shared/config';
import type { Logger } from '../shared/logger';
import { createActivities, type ActivityDeps } from '../activities';
import { HEARTBEAT_THROTTLE_MS } from './attempt-lease';
import { activityInterceptors } from './interceptors';

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
    // Refusals of the data fail at once; Kafka sends settle within their attempt (worker/interceptors.ts).
    interceptors: { activity: activityInterceptors },
    // Heartbeats reach the server within a second of being made: a page's lease follows them (worker/attempt-lease.ts).
    maxHeartbeatThrottleInterval: HEARTBEAT_THROTTLE_MS,
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

/** How long run() gets to resolve once the SDK reports the worker STOPPED (or FAILED). */
const FINALIZE_GRACE_MS = 1000;
const STATE_POLL_MS = 50;

/**
 * Stops a running worker and waits for its run() to end, which resolves only once the core has also told the server
 * the worker is gone: with the server frozen, that call waits for its own RPC timeout, long after the SDK reported
 * STOPPED (every activity and workflow task ended). So once the state is STOPPED or FAILED, run() gets
 * FINALIZE_GRACE_MS more and is then left for the exit. Before that, draining activities are bounded by the SDK
 * (shutdownGraceTime, then shutdownForceTime), and the whole wait by `maxMs`. Resolves whether run() ended; never
 * rejects.
 */
export async function stopWorker(
  worker: Pick<Worker, 'shutdown' | 'getState'>,
  running: Promise<void>,
  maxMs = Infinity,
): Promise<boolean> {
  const until = Date.now() + maxMs;
  const pause = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, Math.min(ms, until - Date.now()))));
  let ended = false;
  const settled = running.then(
    () => (ended = true),
    () => (ended = true),
  );
  if (worker.getState() === 'RUNNING') worker.shutdown();
  while (!ended && Date.now() < until) {
    const state = worker.getState();
    if (state === 'STOPPED' || state === 'FAILED') {
      await Promise.race([settled, pause(FINALIZE_GRACE_MS)]);
      break;
    }
    await Promise.race([settled, pause(STATE_POLL_MS)]);
  }
  return ended;
}

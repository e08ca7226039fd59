import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { MockActivityEnvironment, TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { createActivities, type Activities, type ActivityDeps } from '../../activities';
import { HEARTBEAT_THROTTLE_MS } from '../../worker/attempt-lease';
import { activityInterceptors } from '../../worker/interceptors';
import { createSinkHarness, eventually, type SinkHarness } from './sink';

const REPO = path.resolve(__dirname, '../..');

/** The time-skipping test server installed by scripts/stack.sh (or TEMPORAL_TEST_SERVER_PATH). */
export function testServerPath(): string {
  if (process.env.TEMPORAL_TEST_SERVER_PATH) return process.env.TEMPORAL_TEST_SERVER_PATH;
  return execFileSync('bash', [path.join(REPO, 'scripts/stack.sh'), 'test-server-path'], { encoding: 'utf8' }).trim();
}

/**
 * Deletes a DLQ retry schedule a test's `start` process created on the shared dev server (absent is fine), so that
 * no schedule outlives its test and keeps starting workflows.
 */
export async function deleteSchedule(address: string, scheduleId: string): Promise<void> {
  const connection = await Connection.connect({ address });
  await new Client({ connection }).schedule
    .getHandle(scheduleId)
    .delete()
    .catch(() => undefined);
  await connection.close();
}

/** A client of the dev server a config names; `client.connection.close()` ends it. */
export async function connectClient(temporal: { address: string; namespace: string }): Promise<Client> {
  const connection = await Connection.connect({ address: temporal.address });
  return new Client({ connection, namespace: temporal.namespace });
}

let bundle: Promise<WorkflowBundleWithSourceMap> | undefined;

/** workflows/ bundled once per test file (bundling takes seconds). */
export function workflowBundle(): Promise<WorkflowBundleWithSourceMap> {
  bundle ??= bundleWorkflowCode({ workflowsPath: require.resolve('../../workflows'), logger: quietLogger });
  return bundle;
}

const noop = () => undefined;
const quietLogger = { trace: noop, debug: noop, info: noop, warn: noop, error: console.error, log: noop };

/**
 * A time-skipping test server, a private sink harness, and a worker running every workflow with the real activities
 * on the harness's Postgres and Kafka, and the replay worker's activity interceptors — the setup of the workflow
 * suites. close() undoes all of it.
 */
export async function createTimeSkippingWorld(label: string, taskQueue: string, env: Record<string, string> = {}) {
  const testEnv = await TestWorkflowEnvironment.createTimeSkipping({
    server: { executable: { type: 'existing-path', path: testServerPath() } },
  });
  const h = await createSinkHarness(label, env);
  const worker = await Worker.create({
    connection: testEnv.nativeConnection,
    taskQueue,
    workflowBundle: await workflowBundle(),
    activities: createActivities(activityDeps(h)),
    interceptors: { activity: activityInterceptors },
    maxHeartbeatThrottleInterval: HEARTBEAT_THROTTLE_MS,
  });
  const running = worker.run();
  return {
    env: testEnv,
    h,
    close: async () => {
      worker.shutdown();
      await running;
      await h.close();
      await testEnv.teardown();
    },
  };
}

/** `fn` (calls of real activities) run as an activity of a mock environment, so Context.current() answers. */
export function inActivity<R>(fn: () => Promise<R>): Promise<R> {
  return new MockActivityEnvironment().run(fn) as Promise<R>;
}

/** The real activities' dependencies, from a sink harness (pool, producer, metrics, config, lineage key, archive). */
export function activityDeps(h: SinkHarness, producer: ActivityDeps['producer'] = h.producer): ActivityDeps {
  return {
    pool: h.pool,
    producer,
    metrics: h.metrics,
    log: h.log,
    config: h.config,
    lineageKey: h.lineageKey,
    archive: h.archive,
  };
}

/**
 * Runs one workflow to its end on a worker of its own whose activities are the real ones on the harness, some
 * replaced by `wrap` (to inject failures or hold a step).
 */
export async function runWithActivities<R>(
  env: TestWorkflowEnvironment,
  h: SinkHarness,
  run: { taskQueue: string; workflow: string; workflowId: string; input: unknown },
  wrap: (real: Activities) => Partial<Activities>,
): Promise<R> {
  const real = createActivities(activityDeps(h));
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue: run.taskQueue,
    workflowBundle: await workflowBundle(),
    activities: { ...real, ...wrap(real) },
  });
  return worker.runUntil(
    env.client.workflow.execute(run.workflow, {
      taskQueue: run.taskQueue,
      workflowId: run.workflowId,
      args: [run.input],
      workflowExecutionTimeout: '1d',
    }) as Promise<R>,
  );
}

/** Each workflow's status once it has closed (polled while it runs), in the order of `workflowIds`. */
export async function closedStatuses(client: Client, workflowIds: string[]): Promise<string[]> {
  const statuses: string[] = [];
  for (const id of workflowIds) {
    statuses.push(
      await eventually(async () => {
        const { status } = await client.workflow.getHandle(id).describe();
        return status.name === 'RUNNING' ? undefined : status.name;
      }, `${id} to close`),
    );
  }
  return statuses;
}

/** A workflow's result as text, within `ms`: its JSON, `failed: <message>`, or `not finished in <ms> ms`. */
export function resultWithin(client: Client, workflowId: string, ms: number): Promise<string> {
  return Promise.race([
    client.workflow
      .getHandle(workflowId)
      .result()
      .then((r: unknown) => JSON.stringify(r))
      .catch((err: Error) => `failed: ${err.message}`),
    new Promise<string>((res) => setTimeout(() => res(`not finished in ${ms} ms`), ms)),
  ]);
}

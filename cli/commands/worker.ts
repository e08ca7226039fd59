import { Client, Connection } from '@temporalio/client';
import { createArchiveStore } from '../../archive';
import { createProducer, PRODUCER_DISCONNECT_TIMEOUT_MS } from '../../shared/kafka';
import { closeWithin, stopWait } from '../../shared/stop-clock';
import { shareOf } from '../../shared/timeout';
import { ensureDlqRetrySchedule } from '../../worker/dlq-schedule';
import { ensureMaintenanceSchedule } from '../../worker/maintenance-schedule';
import { installSdkRuntime } from '../../worker/sdk-runtime';
import { connectWorker, createReplayWorker, stopWorker } from '../../worker/worker';
import type { Runtime } from '../runtime';
import { loadLineageKey } from '../../journal/lineage';
import { startDlqGrowthWatch } from '../../notifications/dlq-growth';

/** How long the worker's stop waits for each of its clients to close (cut by the stop's clock). */
const CLIENT_CLOSE_TIMEOUT_MS = 3_000;

/** Starts the Temporal replay worker (and makes sure the DLQ retry and maintenance schedules exist); returns its stopper. */
export async function startWorkerComponent(rt: Runtime) {
  const { config, kafka, pool, metrics } = rt;
  const log = rt.log.child({ module: 'worker' });
  installSdkRuntime(log);
  // Its disconnect comes after the worker drained (5 s): a tenth of SHUTDOWN_TIMEOUT, at most 3 s.
  const producer = createProducer(kafka, log, {
    disconnectTimeoutMs: shareOf(config.shutdownTimeoutMs, 10, PRODUCER_DISCONNECT_TIMEOUT_MS),
  });
  await producer.connect();
  const connection = await connectWorker(config, log);
  const clientConnection = await Connection.connect({ address: config.temporal.address });
  const client = new Client({ connection: clientConnection, namespace: config.temporal.namespace });
  await ensureDlqRetrySchedule(client, config, log);
  await ensureMaintenanceSchedule(client, config, log);
  const lineageKey = await loadLineageKey(pool, config.lineageKey);
  const archive = createArchiveStore(config.archive);
  const worker = await createReplayWorker({
    connection,
    config,
    deps: { pool, producer, metrics, log, config, lineageKey, archive },
  });
  // Kept open for the DLQ growth watch's notifications (activities use the worker's own client).
  const growthWatch = startDlqGrowthWatch({
    client: () => client,
    taskQueue: config.temporal.taskQueue,
    pool,
    log,
    metrics,
    config: config.notifications,
  });
  const running = worker.run();
  running.catch((err: Error) => {
    log.fatal({ err }, 'Temporal worker stopped unexpectedly');
    process.exitCode = 1;
  });
  log.info({ task_queue: config.temporal.taskQueue }, 'Temporal worker started');
  return {
    stop: async function temporalWorker() {
      await growthWatch.stop();
      // Draining activities are bounded by the SDK (grace, then forced stop); the whole by the stop's clock.
      if (!(await stopWorker(worker, running, stopWait(Infinity)))) {
        log.warn('The Temporal worker did not finish stopping in time (a server that does not answer); left it');
      }
      // Each close has a bound: a frozen Temporal server or object store would hold it until the deadline.
      await closeWithin(clientConnection.close(), CLIENT_CLOSE_TIMEOUT_MS, log, 'The Temporal client connection');
      await producer.disconnect();
      await closeWithin(archive.close(), CLIENT_CLOSE_TIMEOUT_MS, log, 'The archive store');
      await closeWithin(connection.close(), CLIENT_CLOSE_TIMEOUT_MS, log, 'The Temporal worker connection');
    },
  };
}

import { Client, Connection } from '@temporalio/client';
import { createArchiveStore } from '../../archive';
import { createProducer, PRODUCER_DISCONNECT_TIMEOUT_MS } from '../../shared/kafka';
import { shareOf } from '../../shared/timeout';
import { ensureDlqRetrySchedule } from '../../worker/dlq-schedule';
import { ensureMaintenanceSchedule } from '../../worker/maintenance-schedule';
import { installSdkRuntime } from '../../worker/sdk-runtime';
import { connectWorker, createReplayWorker } from '../../worker/worker';
import type { Runtime } from '../runtime';
import { loadLineageKey } from '../../journal/lineage';
import { startDlqGrowthWatch } from '../../notifications/dlq-growth';

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
      worker.shutdown();
      await running.catch(() => undefined);
      await clientConnection.close();
      await producer.disconnect();
      await archive.close();
      await connection.close();
    },
  };
}

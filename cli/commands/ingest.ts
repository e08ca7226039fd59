import { startIngest } from '../../ingest/consumer';
import { IngestStartInterrupted } from '../../ingest/group-start';
import type { LagMonitor } from '../../ingest/lag-monitor';
import type { Runtime } from '../runtime';

/**
 * Starts the Kafka → journal consumer; returns its stopper (stops the watchdog, finishes and commits the batch in
 * flight). Given the process's lag monitor, its watchdog restarts a consumer that hangs (INGEST_WATCHDOG_SECONDS).
 * Returns undefined when `stopRequested` ended the start (a stop signal while it waited to commit its group's start).
 */
export async function startIngestComponent(rt: Runtime, lagMonitor?: LagMonitor, stopRequested?: AbortSignal) {
  try {
    const ingest = await startIngest({ ...rt, log: rt.log.child({ module: 'ingest' }), lagMonitor, stopRequested });
    return { ingest, stop: () => ingest.stop() };
  } catch (err) {
    if (!(err instanceof IngestStartInterrupted)) throw err;
    rt.log.info({ reason: err.message }, 'Ingest stopped while starting; nothing was consumed');
    return undefined;
  }
}

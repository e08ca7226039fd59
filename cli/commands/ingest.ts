import { startIngest } from '../../ingest/consumer';
import type { LagMonitor } from '../../ingest/lag-monitor';
import type { Runtime } from '../runtime';

/**
 * Starts the Kafka → journal consumer; returns its stopper (stops the watchdog, finishes and commits the batch in
 * flight). Given the process's lag monitor, its watchdog restarts a consumer that hangs (INGEST_WATCHDOG_SECONDS).
 */
export async function startIngestComponent(rt: Runtime, lagMonitor?: LagMonitor) {
  const ingest = await startIngest({ ...rt, log: rt.log.child({ module: 'ingest' }), lagMonitor });
  return { ingest, stop: () => ingest.stop() };
}

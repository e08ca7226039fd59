import { startIngest } from '../../ingest/consumer';
import { startMetricsServer } from '../../shared/metrics-server';
import type { Runtime } from '../runtime';

/** Starts the consumer and the :9105 metrics endpoint; returns the stoppers in shutdown order. */
export async function startIngestComponent(rt: Runtime) {
  const { config, log, metrics } = rt;
  const metricsServer = await startMetricsServer(metrics.registry, config.metrics.host, config.metrics.port, log);
  const ingest = await startIngest({ ...rt, log: log.child({ module: 'ingest' }) });
  return {
    ingest,
    stopIntake: () => ingest.stop(),
    stopRest: () => new Promise((resolve) => metricsServer.close(resolve)),
  };
}

import { startIngest } from '../../ingest/consumer';
import { countDlqEntries } from '../../repository/event-dlq';
import { startMetricsServer } from '../../shared/metrics-server';
import type { Runtime } from '../runtime';

/** Starts the consumer and the :9105 metrics endpoint; returns the stoppers in shutdown order. */
export async function startIngestComponent(rt: Runtime) {
  const { config, log, pool, metrics } = rt;
  metrics.dlqSize.reset();
  const dlqGauge = setInterval(() => {
    countDlqEntries(pool).then(
      (n) => metrics.dlqSize.set(n),
      () => undefined, // Postgres away: keep the last value; /health reports the outage
    );
  }, 5000);
  dlqGauge.unref();
  const metricsServer = await startMetricsServer(metrics.registry, config.metrics.host, config.metrics.port, log);
  const ingest = await startIngest({ ...rt, log: log.child({ module: 'ingest' }) });
  return {
    ingest,
    stopIntake: () => ingest.stop(),
    stopRest: async () => {
      clearInterval(dlqGauge);
      await new Promise((resolve) => metricsServer.close(resolve));
    },
  };
}

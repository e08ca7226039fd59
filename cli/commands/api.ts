import { buildApp } from '../../api/app';
import { createPool, endPool } from '../../shared/db';
import { disconnectAdmin } from '../../shared/kafka';
import type { TlsPair } from '../../shared/tls';
import type { LagMonitor } from '../../ingest/lag-monitor';
import type { Runtime } from '../runtime';

/**
 * Starts the Fastify API on :9106; returns its stopper. With a lag monitor, /health reports stalled partitions.
 * With `tls` (API_TLS_CERT/API_TLS_KEY or API_TLS=self-signed, loaded by the caller) it serves HTTPS, HTTP/2 first.
 * The API gets a small pool of its own (API_DATABASE_POOL_SIZE): however many stream clients catch up or list pages
 * at once, they queue for these connections and never for the ones ingest commits batches on (rt.pool).
 */
export async function startApiComponent(rt: Runtime, lagMonitor?: LagMonitor, tls?: TlsPair) {
  const { config, kafka, metrics, log } = rt;
  const pool = createPool(
    config.databaseUrl,
    config.api.databasePoolSize,
    log,
    config.databaseStatementTimeoutMs,
    'crm-events-sink-api',
  );
  const admin = kafka.admin();
  let adminConnected: Promise<void> | undefined;
  const app = await buildApp({
    config,
    pool,
    metrics,
    log: log.child({ module: 'api' }),
    healthChecks: {
      postgres: () => pool.query('SELECT 1'),
      kafka: async () => {
        adminConnected ??= admin.connect().catch((err) => {
          adminConnected = undefined;
          throw err;
        });
        await adminConnected;
        await admin.describeCluster();
      },
      ...(lagMonitor && { ingest: lagMonitor.check }),
    },
    tls: tls && { cert: tls.cert, key: tls.key },
  });
  await app.listen({ host: config.api.host, port: config.api.port });
  return {
    app,
    stop: async () => {
      await app.close();
      await disconnectAdmin(admin, undefined, log);
      await endPool(pool, rt.log);
    },
  };
}

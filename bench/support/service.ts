import { DefaultLogger, NativeConnection, Runtime, type Worker } from '@temporalio/worker';
import type { FastifyInstance } from 'fastify';
import type { Producer } from 'kafkajs';
import { buildApp } from '../../api/app';
import { createArchiveStore } from '../../archive';
import type { Config } from '../../shared/config';
import type { Pool } from '../../shared/db';
import type { Logger } from '../../shared/logger';
import { createMetrics } from '../../shared/metrics';
import { createReplayWorker } from '../../worker/worker';
import { loadLineageKey } from '../../journal/lineage';

/** The project's replay worker on the config's (private) task queue, running until stop(). */
export async function startWorker(config: Config, pool: Pool, producer: Producer, log: Logger) {
  quietTemporal();
  const connection = await NativeConnection.connect({ address: config.temporal.address });
  const metrics = createMetrics(config.metrics.tenantLabelLimit);
  const lineageKey = await loadLineageKey(pool, config.lineageKey);
  const archive = createArchiveStore(config.archive);
  const worker: Worker = await createReplayWorker({
    connection,
    config,
    deps: { pool, producer, metrics, log, config, lineageKey, archive },
  });
  const running = worker.run();
  return {
    async stop() {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await running;
      await archive.close();
      await connection.close();
    },
  };
}

/** The project's API listening on a random local port; `url` is its base address. */
export async function startApi(
  config: Config,
  pool: Pool,
  log: Logger,
): Promise<{ app: FastifyInstance; url: string }> {
  const app = await buildApp({
    config,
    pool,
    metrics: createMetrics(config.metrics.tenantLabelLimit),
    log,
    healthChecks: { postgres: () => pool.query('SELECT 1') },
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  if (!address || typeof address === 'string') throw new Error('API is not listening on a TCP port');
  return { app, url: `http://127.0.0.1:${address.port}` };
}

/**
 * POST /replay/:id (optionally to a target topic); resolves with the workflow id once the API answers 200, or also
 * 202 (still running after the API's wait) when accepted is true.
 */
export async function postReplay(url: string, id: number, targetTopic?: string, accepted = false): Promise<string> {
  const query = targetTopic ? `?target_topic=${encodeURIComponent(targetTopic)}` : '';
  const res = await fetch(`${url}/replay/${id}${query}`, { method: 'POST', headers: { 'x-requested-by': 'bench' } });
  const body = (await res.json()) as { workflow_id?: string; message?: string };
  const ok = res.status === 200 || (accepted && res.status === 202);
  if (!ok || !body.workflow_id) throw new Error(`POST /replay/${id} answered ${res.status}: ${JSON.stringify(body)}`);
  return body.workflow_id;
}

let quiet = false;

/** The SDK logs every worker state change at INFO; the benchmark's output keeps only warnings. */
function quietTemporal(): void {
  if (quiet) return;
  quiet = true;
  Runtime.install({ logger: new DefaultLogger('WARN') });
}

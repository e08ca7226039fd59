import type { ChildProcess } from 'node:child_process';
import { freePort } from '../../bench/support/ports';
import { exited, spawnCli } from './ingest-process';
import { eventually, type SinkHarness } from './sink';

/** A real `crm-events-sink api` process on a harness's database and topics, on a free loopback port. */
export interface ApiProcess {
  child: ChildProcess;
  port: number;
  url: string;
  /** SIGTERM unless it has already exited; resolves once it has. */
  stop(): Promise<void>;
}

/** Spawns the API as its own process (with `env` on top) on a free loopback port, without waiting for it. */
export async function spawnApiProcess(
  h: SinkHarness,
  env: Record<string, string>,
): Promise<Pick<ApiProcess, 'child' | 'port' | 'url'>> {
  const port = await freePort();
  const child = spawnCli('api', {
    DATABASE_URL: h.databaseUrl,
    KAFKA_TOPICS: `${h.topics.leads},${h.topics.jobs}`,
    API_HOST: '127.0.0.1',
    API_PORT: String(port),
    ...env,
  });
  return { child, port, url: `http://127.0.0.1:${port}` };
}

/** Starts the API as its own process (with `env` on top) and waits until /health answers 200. */
export async function startApiProcess(h: SinkHarness, env: Record<string, string>): Promise<ApiProcess> {
  const { child, port, url } = await spawnApiProcess(h, env);
  await eventually(async () => (await fetch(`${url}/health`)).status === 200, `API on :${port} to answer`);
  return {
    child,
    port,
    url,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited(child);
    },
  };
}

/**
 * On top of spawnApiProcess's env: plain HTTP, no auth, the harness's consumer group, its own task queue, the given
 * SHUTDOWN_TIMEOUT, and info logs (what untilPrinted waits for: 'Server listening at http://').
 */
export function plainApiEnv(h: SinkHarness, taskQueue: string, shutdownTimeoutMs: number): Record<string, string> {
  return {
    KAFKA_GROUP_ID: h.config.kafka.groupId,
    TEMPORAL_TASK_QUEUE: taskQueue,
    API_TLS: '',
    AUTH_JWT_SECRET: '',
    AUTH_MODE: '',
    SHUTDOWN_TIMEOUT: `${shutdownTimeoutMs}ms`,
    LOG_LEVEL: 'info',
  };
}

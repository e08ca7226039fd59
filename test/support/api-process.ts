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

/** Starts the API as its own process (with `env` on top) and waits until /health answers 200. */
export async function startApiProcess(h: SinkHarness, env: Record<string, string>): Promise<ApiProcess> {
  const port = await freePort();
  const child = spawnCli('api', {
    DATABASE_URL: h.databaseUrl,
    KAFKA_TOPICS: `${h.topics.leads},${h.topics.jobs}`,
    API_HOST: '127.0.0.1',
    API_PORT: String(port),
    ...env,
  });
  const url = `http://127.0.0.1:${port}`;
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

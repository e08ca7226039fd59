import type { ChildProcess } from 'node:child_process';
import type { Client } from '@temporalio/client';
import { plainApiEnv, spawnApiProcess, type ApiProcess } from './api-process';
import { trackedChildren } from './ingest-process';
import { createSinkHarness, type SinkHarness } from './sink';
import { connectClient } from './temporal';
import { localWorkerProcesses, type WorkerProcesses } from './worker-process';

/**
 * What the fault suites that run real api and worker processes on a local archive start from: a private harness, a
 * client of the dev Temporal server, the file's task queue with its workers (test/support/worker-process.ts), and the
 * file's other child processes.
 */
export interface ProcessWorld {
  h: SinkHarness;
  client: Client;
  queue: string;
  workers: WorkerProcesses;
  /** Tracks a child until it exits: close() SIGKILLs it if it is still running. */
  track<T extends ChildProcess>(child: T): T;
  /**
   * Spawns a tracked API on the world's task queue (plainApiEnv with SHUTDOWN_TIMEOUT `shutdownTimeoutMs`, `env` on
   * top), without waiting for it.
   */
  spawnApi(
    shutdownTimeoutMs: number,
    env?: Record<string, string>,
  ): Promise<Pick<ApiProcess, 'child' | 'port' | 'url'>>;
  /** SIGKILLs every child still running, deletes the workers' schedules, closes the client and the harness. */
  close(): Promise<void>;
}

/** `workerEnv` goes on top of every worker's (SHUTDOWN_TIMEOUT, DATABASE_POOL_SIZE). */
export async function createProcessWorld(
  label: string,
  queue: string,
  workerEnv: Record<string, string> = {},
): Promise<ProcessWorld> {
  const h = await createSinkHarness(label);
  const client = await connectClient(h.config.temporal).catch(async (err: unknown) => {
    await h.close();
    throw err;
  });
  const workers = localWorkerProcesses(h, queue, workerEnv);
  const children = trackedChildren();
  return {
    h,
    client,
    queue,
    workers,
    track: children.track,
    async spawnApi(shutdownTimeoutMs, env = {}) {
      const api = await spawnApiProcess(h, { ...plainApiEnv(h, queue, shutdownTimeoutMs), ...env });
      children.track(api.child);
      return api;
    },
    async close() {
      children.killAll();
      await workers.close();
      await client.connection.close();
      await h.close();
    },
  };
}

import type { ChildProcess } from 'node:child_process';
import { exited, spawnIngest } from './ingest-process';
import type { SinkHarness } from './sink';

/**
 * Ingest processes of one harness's group, started with KAFKA_FROM_BEGINNING=false on chosen topics, as replicas
 * of a deployment would run; killAll() (for afterEach) SIGKILLs whichever are still running.
 */
export interface IngestChildren {
  start(topics: string[], sessionTimeoutMs?: number): ChildProcess;
  /** Sends the signal and waits for the exit; resolves with its code. */
  stop(child: ChildProcess, signal: NodeJS.Signals): Promise<number | null>;
  killAll(): Promise<void>;
}

export function ingestChildren(h: () => SinkHarness): IngestChildren {
  const running: ChildProcess[] = [];
  const stop = async (child: ChildProcess, signal: NodeJS.Signals) => {
    child.kill(signal);
    const code = await exited(child);
    running.splice(running.indexOf(child), 1);
    return code;
  };
  return {
    start(topics, sessionTimeoutMs = 30_000) {
      const { config } = h();
      const child = spawnIngest({
        DATABASE_URL: config.databaseUrl,
        KAFKA_TOPICS: topics.join(','),
        KAFKA_GROUP_ID: config.kafka.groupId,
        KAFKA_FROM_BEGINNING: 'false',
        KAFKA_SESSION_TIMEOUT_MS: String(sessionTimeoutMs),
        LOG_LEVEL: 'info', // untilPrinted(child, 'Metrics listening'): it catches stop signals from then on
      });
      running.push(child);
      return child;
    },
    stop,
    async killAll() {
      for (const child of [...running]) await stop(child, 'SIGKILL');
    },
  };
}

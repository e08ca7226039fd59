import type { ChildProcess } from 'node:child_process';
import type { ArchiveS3Config } from '../../shared/config';
import { spawnCli, trackedChildren, untilPrinted } from './ingest-process';
import { localArchiveEnv, type SinkHarness } from './sink';
import { deleteSchedule } from './temporal';

/**
 * The real `crm-events-sink worker` processes of one test file: on the harness's database and topics, archiving to
 * an S3 bucket, on the file's own task queue and schedule ids (so that no other file's worker takes its tasks and the
 * schedules they create can be deleted afterwards).
 */
export interface WorkerProcesses {
  /** Spawns one, with `env` on top of the set's. */
  spawn(env?: Record<string, string>): ChildProcess;
  /** Spawns one and waits until its Temporal worker has started. */
  start(env?: Record<string, string>): Promise<ChildProcess>;
  /** SIGKILLs every one still running and deletes the schedules they created. */
  close(): Promise<void>;
}

/** `env` goes on top of every worker's (ARCHIVE_S3_ENDPOINT to put a proxy in front of the bucket, SHUTDOWN_TIMEOUT). */
export function s3WorkerProcesses(
  h: SinkHarness,
  queue: string,
  s3: ArchiveS3Config,
  env: Record<string, string> = {},
): WorkerProcesses {
  return workerProcesses(h, queue, {
    ARCHIVE_STORE: 's3',
    ARCHIVE_S3_ENDPOINT: s3.endpoint ?? '',
    ARCHIVE_S3_BUCKET: s3.bucket,
    ARCHIVE_S3_REGION: s3.region,
    ARCHIVE_S3_ACCESS_KEY_ID: s3.accessKeyId ?? '',
    ARCHIVE_S3_SECRET_ACCESS_KEY: s3.secretAccessKey ?? '',
    ...env,
  });
}

/** The same, archiving to the harness's local archive directory. */
export function localWorkerProcesses(h: SinkHarness, queue: string, env: Record<string, string> = {}): WorkerProcesses {
  return workerProcesses(h, queue, { ...localArchiveEnv(h), ...env });
}

function workerProcesses(h: SinkHarness, queue: string, env: Record<string, string>): WorkerProcesses {
  const running = trackedChildren();
  const spawn = (extra: Record<string, string> = {}) =>
    running.track(
      spawnCli('worker', {
        DATABASE_URL: h.config.databaseUrl,
        KAFKA_TOPICS: h.config.kafka.topics.join(','),
        TEMPORAL_TASK_QUEUE: queue,
        DLQ_RETRY_SCHEDULE_ID: `${queue}-dlq`,
        MAINTENANCE_SCHEDULE_ID: `${queue}-mnt`,
        LOG_LEVEL: 'info',
        ...env,
        ...extra,
      }),
    );
  return {
    spawn,
    async start(extra) {
      const worker = spawn(extra);
      await untilPrinted(worker, 'Temporal worker started');
      return worker;
    },
    async close() {
      running.killAll();
      for (const id of [`${queue}-dlq`, `${queue}-mnt`]) await deleteSchedule(h.config.temporal.address, id);
    },
  };
}

import { Client, Connection } from '@temporalio/client';
import type { ChildProcess } from 'node:child_process';
import type { RangeReplayInput } from '../../workflows/definitions';
import { journaledReplays, seedJournal } from '../support/journal';
import { kafkaBrokerPid } from '../support/stack';
import { deleteSchedule } from '../support/temporal';
import { exited, spawnCli, untilPrinted } from '../support/ingest-process';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';
import { uniqueSuffix } from '../support/env';

/**
 * attack24: SIGTERM to a `worker` process with SHUTDOWN_TIMEOUT=10s while a range replay runs and the Kafka broker is
 * frozen (SIGSTOP: a paused VM, a GC stall).
 *
 * Invariants (docs/integrity.md "Shutdown"; .env.example SHUTDOWN_TIMEOUT): the worker exits within SHUTDOWN_TIMEOUT
 * whatever Kafka is doing, and the replay it was running, picked up by the next worker once the broker is back,
 * republishes every event exactly once (the journal holds each replay once).
 *
 * Attack: the worker's stop closed its Kafka producer with no bound of its own (kafkajs's disconnect waits for the
 * requests in flight, which a frozen broker answers only at their timeout), after the SDK's forced stop at
 * 0.8 × SHUTDOWN_TIMEOUT.
 *
 * The broker is frozen by SIGSTOP to the process listening on the stack's Kafka port (SIGCONT in `finally`); run it
 * in the alone group.
 */
jest.setTimeout(240_000);

const SHUTDOWN_TIMEOUT_MS = 10_000;
const EVENTS = 3000;
const queue = `a24-worker-frozen-${uniqueSuffix()}`;
let h: SinkHarness;
let connection: Connection;
let client: Client;
const workers: ChildProcess[] = [];

beforeAll(async () => {
  h = await createSinkHarness('a24wkfrozen');
  await seedJournal(h.pool, EVENTS, { topics: [h.topics.leads], tenants: ['a24'] });
  await h.startIngest(); // journals the replays, which land on the harness's jobs topic
  connection = await Connection.connect({ address: h.config.temporal.address });
  client = new Client({ connection, namespace: h.config.temporal.namespace });
}, 60_000);
afterAll(async () => {
  for (const w of workers) w.kill('SIGKILL');
  for (const id of [`${queue}-dlq-retry`, `${queue}-dlq-retry-maintenance`]) {
    await deleteSchedule(h.config.temporal.address, id);
  }
  await connection?.close();
  await h?.close();
});

function startWorker(env: Record<string, string> = {}): ChildProcess {
  const worker = spawnCli('worker', {
    DATABASE_URL: h.config.databaseUrl,
    KAFKA_TOPICS: h.config.kafka.topics.join(','),
    TEMPORAL_TASK_QUEUE: queue,
    DLQ_RETRY_SCHEDULE_ID: `${queue}-dlq-retry`,
    MAINTENANCE_SCHEDULE_ID: `${queue}-dlq-retry-maintenance`,
    LOG_LEVEL: 'info',
    ...env,
  });
  workers.push(worker);
  return worker;
}

it('SIGTERM mid-range-replay with the broker frozen: exits within SHUTDOWN_TIMEOUT; the next worker finishes the range once', async () => {
  const worker = startWorker({ SHUTDOWN_TIMEOUT: `${SHUTDOWN_TIMEOUT_MS}ms` });
  await untilPrinted(worker, 'Temporal worker started');
  const id = `a24-range-${uniqueSuffix()}`;
  const input: RangeReplayInput = {
    start: '2000-01-01T00:00:00Z',
    end: '2100-01-01T00:00:00Z',
    tenantId: 'a24',
    topic: h.topics.leads,
    targetTopic: h.topics.jobs,
    maxEventsPerSecond: 400,
    pageSize: 100,
    source: 'range',
  };
  const handle = await client.workflow.start('rangeReplayWorkflow', {
    taskQueue: queue,
    workflowId: id,
    args: [input],
  });
  await eventually(
    async () => (await journaledReplays(h.pool, id)).total > 300,
    'the replay to be under way',
    60_000,
    50,
  );
  const pid = kafkaBrokerPid(h.config.kafka.brokers);
  let code: number | null | 'running';
  let tookMs: number;
  try {
    process.kill(pid, 'SIGSTOP');
    await new Promise((r) => setTimeout(r, 2000));
    const signalled = Date.now();
    worker.kill('SIGTERM');
    code = await Promise.race([exited(worker), new Promise<'running'>((r) => setTimeout(() => r('running'), 45_000))]);
    tookMs = Date.now() - signalled;
  } finally {
    process.kill(pid, 'SIGCONT');
  }
  expect({ code, withinShutdownTimeout: tookMs < SHUTDOWN_TIMEOUT_MS }).toEqual({
    code: 0,
    withinShutdownTimeout: true,
  });
  // A send was in flight at the stop, which is what held the producer's disconnect (a tenth of the timeout here).
  await untilPrinted(worker, 'The Kafka producer did not disconnect within 1000 ms; abandoned it', 1_000);

  startWorker();
  const result = await handle.result();
  expect(result).toMatchObject({ status: 'completed', matched: EVENTS, failed: 0 });
  await eventually(
    async () => (await journaledReplays(h.pool, id)).sources === EVENTS,
    'every replay journaled',
    120_000,
  );
  await new Promise((r) => setTimeout(r, 2000));
  expect(await journaledReplays(h.pool, id)).toEqual({ total: EVENTS, sources: EVENTS });
});

import { Client, Connection } from '@temporalio/client';
import type { ChildProcess } from 'node:child_process';
import type { RangeReplayInput } from '../../workflows/definitions';
import { journaledReplays, seedJournal } from '../support/journal';
import { exited, spawnCli } from '../support/ingest-process';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';
import { stack } from '../support/stack';
import { uniqueSuffix } from '../support/env';

let h: SinkHarness;
let connection: Connection;
let client: Client;
let worker: ChildProcess | undefined;
const queue = `replay-faults-${uniqueSuffix()}`;
const scheduleId = `${queue}-dlq-retry`;
let workerEnv: Record<string, string>;
const EVENTS = 3000;

beforeAll(async () => {
  h = await createSinkHarness('replayfaults');
  await seedJournal(h.pool, EVENTS, { topics: [h.topics.leads], tenants: ['faults'] });
  await h.startIngest(); // journals the replays, which land on the harness's jobs topic
  connection = await Connection.connect({ address: h.config.temporal.address });
  client = new Client({ connection, namespace: h.config.temporal.namespace });
  workerEnv = {
    DATABASE_URL: h.config.databaseUrl,
    KAFKA_TOPICS: h.config.kafka.topics.join(','),
    TEMPORAL_TASK_QUEUE: queue,
    DLQ_RETRY_SCHEDULE_ID: scheduleId,
    MAINTENANCE_SCHEDULE_ID: `${scheduleId}-maintenance`,
  };
});
afterAll(async () => {
  stack('up');
  worker?.kill('SIGKILL');
  for (const id of [scheduleId, `${scheduleId}-maintenance`]) {
    await client?.schedule
      .getHandle(id)
      .delete()
      .catch(() => undefined);
  }
  await connection?.close();
  await h?.close();
});

/** The real `crm-events-sink worker` as a child process; the replay waits in Temporal until it polls. */
function startWorker(): void {
  worker = spawnCli('worker', workerEnv);
}

async function stopWorker(signal: NodeJS.Signals): Promise<void> {
  if (!worker) return;
  worker.kill(signal);
  await exited(worker);
  worker = undefined;
}

function startRange(workflowId: string) {
  const input: RangeReplayInput = {
    start: '2000-01-01T00:00:00Z',
    end: '2100-01-01T00:00:00Z',
    tenantId: 'faults',
    topic: h.topics.leads,
    targetTopic: h.topics.jobs,
    maxEventsPerSecond: 400, // ~8 s for 3000 events: time to break things in the middle
    pageSize: 100,
    source: 'range',
  };
  return client.workflow.start('rangeReplayWorkflow', { taskQueue: queue, workflowId, args: [input] });
}

async function expectCompleteOnce(workflowId: string, handle: Awaited<ReturnType<typeof startRange>>) {
  const result = await handle.result();
  expect(result).toMatchObject({ status: 'completed', matched: EVENTS, failed: 0 });
  expect(result.published).toBeGreaterThanOrEqual(EVENTS); // a page resent after a crash counts again here...
  await eventually(
    async () => (await journaledReplays(h.pool, workflowId)).sources === EVENTS,
    'every replay journaled',
    120_000,
  );
  await new Promise((r) => setTimeout(r, 2000));
  expect(await journaledReplays(h.pool, workflowId)).toEqual({ total: EVENTS, sources: EVENTS }); // ...but is journaled once
}

it('worker SIGKILLed mid-range-replay and restarted: the range finishes with every event replayed once', async () => {
  startWorker();
  const id = `replay-range-fault-worker-${uniqueSuffix()}`;
  const handle = await startRange(id);
  await eventually(
    async () => (await journaledReplays(h.pool, id)).total > 300,
    'the replay to be under way',
    60_000,
    50,
  );
  await stopWorker('SIGKILL');
  const atKill = (await journaledReplays(h.pool, id)).total;
  expect(atKill).toBeLessThan(EVENTS);
  await new Promise((r) => setTimeout(r, 2000));
  startWorker();
  await expectCompleteOnce(id, handle);
});

it('Temporal dev server restarted mid-range-replay: the workflow resumes from its history and finishes once', async () => {
  if (!worker) startWorker();
  const id = `replay-range-fault-temporal-${uniqueSuffix()}`;
  const handle = await startRange(id);
  await eventually(
    async () => (await journaledReplays(h.pool, id)).total > 300,
    'the replay to be under way',
    60_000,
    50,
  );
  stack('down', 'temporal');
  await new Promise((r) => setTimeout(r, 2000));
  stack('up', 'temporal');
  await expectCompleteOnce(id, handle);
});

it('Kafka broker SIGKILLed mid-range-replay: pages retry until it is back, every event replayed once', async () => {
  if (!worker) startWorker();
  const id = `replay-range-fault-kafka-${uniqueSuffix()}`;
  const handle = await startRange(id);
  await eventually(
    async () => (await journaledReplays(h.pool, id)).total > 300,
    'the replay to be under way',
    60_000,
    50,
  );
  stack('kill', 'kafka');
  await new Promise((r) => setTimeout(r, 3000));
  stack('up', 'kafka');
  await expectCompleteOnce(id, handle);
  expect(await h.dlqCount()).toBe(0);
});

import { Client, Connection } from '@temporalio/client';
import type { ChildProcess } from 'node:child_process';
import { ensureTopics } from '../../shared/kafka';
import type { RangeReplayInput } from '../../workflows/definitions';
import { exited, spawnCli } from '../support/ingest-process';
import { collapseRepeats, keyOrders, seedInterleavedKeys } from '../support/partial-send';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';
import { uniqueSuffix } from '../support/env';

/**
 * Per-key order through a worker's death (real worker process, Temporal dev server, Postgres, Kafka).
 *
 * Invariant: under per_key ordering each key's events reach the target in journal order, at most one repeated back to
 * back, whatever point the worker dies at (docs/integrity.md, "Per-key ordering").
 *
 * Shown by SIGKILLing the worker while a per_key range replay sends its waves (a few ms each: far more of them than
 * the heartbeats the SDK sends, one a second at most, have told the server of): the retry, on a new worker, resumes
 * from the progress written to Postgres before the last wave (send_progress), not from the older heartbeat, and no key
 * sees an older event after a newer one. Sent from heartbeats alone, the retry resent the waves of up to a second.
 */
jest.setTimeout(300_000);

let h: SinkHarness;
let connection: Connection;
let client: Client;
let worker: ChildProcess | undefined;
let ids: number[];
const queue = `per-key-kill-${uniqueSuffix()}`;
const EVENTS = 4000;
const KEYS = ['lead-a', 'lead-b', 'lead-c'];

beforeAll(async () => {
  h = await createSinkHarness('perkeykill');
  ids = await seedInterleavedKeys(h.pool, h.topics.leads, EVENTS, KEYS, 7);
  connection = await Connection.connect({ address: h.config.temporal.address });
  client = new Client({ connection, namespace: h.config.temporal.namespace });
});
afterAll(async () => {
  worker?.kill('SIGKILL');
  await connection?.close();
  await h?.close();
});

function startWorker(target: string): void {
  worker = spawnCli('worker', {
    DATABASE_URL: h.config.databaseUrl,
    KAFKA_TOPICS: h.config.kafka.topics.join(','),
    REPLAY_TARGET_TOPICS: target,
    TEMPORAL_TASK_QUEUE: queue,
    DLQ_RETRY_SCHEDULE_ID: `${queue}-dlq-retry`,
    MAINTENANCE_SCHEDULE_ID: `${queue}-maintenance`,
  });
}

/** How many ids of its current pages the workflow's activities have written as sent (send_progress_sent). */
async function wavesWritten(workflowId: string): Promise<number> {
  const { rows } = await h.pool.query<{ n: number }>(
    `SELECT coalesce(sum(cardinality(s.ids)), 0)::int AS n
       FROM send_progress_sent s JOIN send_progress p USING (run_id, activity_id)
      WHERE p.workflow_id = $1`,
    [workflowId],
  );
  return rows[0].n;
}

it('a worker SIGKILLed while a per_key range replay sends: each key keeps journal order through the retry', async () => {
  const target = `${h.topics.leads}.per-key-kill`;
  await ensureTopics(h.kafka, [target], 3);
  startWorker(target);
  const workflowId = `per-key-kill-${uniqueSuffix()}`;
  const input: RangeReplayInput = {
    start: '2000-01-01T00:00:00Z',
    end: '2100-01-01T00:00:00Z',
    topic: h.topics.leads,
    source: 'range',
    targetTopic: target,
    ordering: 'per_key',
    pageSize: 1000,
  };
  const handle = await client.workflow.start('rangeReplayWorkflow', { taskQueue: queue, workflowId, args: [input] });
  // Mid-page, waves flowing: killed between two of them, with the last second's heartbeats not yet sent.
  await eventually(async () => (await wavesWritten(workflowId)) > 60, 'waves to be under way', 120_000, 20);
  worker!.kill('SIGKILL');
  await exited(worker!);
  const writtenAtKill = await wavesWritten(workflowId);
  startWorker(target);
  // The killed attempt's heartbeat timeout (90 s) passes before its retry starts on the new worker.
  const result = await handle.result();
  expect(result).toMatchObject({ status: 'completed', matched: EVENTS, failed: 0 });

  const { journal, seen } = await keyOrders(h.pool, h.kafka, target, ids);
  for (const [key, order] of journal) {
    const got = seen.get(key) ?? [];
    // Adjacent repeats dropped, each key's events are the journal's, in its order (nothing older after newer), and at
    // most one is repeated: the wave under way at the kill.
    expect({
      key,
      inJournalOrder: JSON.stringify(collapseRepeats(got)) === JSON.stringify(order),
      repeatedAtMostOnce: got.length - order.length <= 1,
    }).toEqual({ key, inJournalOrder: true, repeatedAtMostOnce: true });
  }
  expect(writtenAtKill).toBeGreaterThan(60);
  // The rows of the finished replay's activities are closed as the next one starts; the last one's stays open (swept
  // after a week).
  const { rows } = await h.pool.query<{ open: number }>(
    'SELECT count(*) FILTER (WHERE NOT closed)::int AS open FROM send_progress WHERE workflow_id = $1',
    [workflowId],
  );
  expect(rows[0].open).toBe(1);
});

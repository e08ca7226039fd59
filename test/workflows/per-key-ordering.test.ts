import { WorkflowFailedError } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { createActivities } from '../../activities';
import { ensureTopics } from '../../shared/kafka';
import type { BatchReplayInput, RangeReplayInput } from '../../workflows/definitions';
import { readTopic, topicSize } from '../support/journal';
import { archiveWindow } from '../../bench/support/archive';
import { partlyFailingProducer, seedInterleavedKeys, type PartialSendFailure } from '../support/partial-send';
import { createSinkHarness, type SinkHarness } from '../support/sink';
import { activityDeps, testServerPath, workflowBundle } from '../support/temporal';

/**
 * Per-key ordering (time-skipping, real activities on Postgres and Kafka): events of interleaved keys, and a broker
 * failure injected in the middle of a page that writes some partitions and not others. With `per_key`, every key's
 * events reach the target in journal order (at most its last one repeated, back to back); the default ordering resends
 * the whole page, and an older event of a key lands after a newer one — the failure per_key exists for.
 */
let env: TestWorkflowEnvironment;
let h: SinkHarness;
let worker: Worker;
let running: Promise<void>;
let ids: number[];
const taskQueue = 'per-key-ordering-test';
const KEYS = ['lead-a', 'lead-b', 'lead-c', 'lead-d'];
const EVENTS = 48;
const window = { start: '2000-01-01T00:00:00Z', end: '2100-01-01T00:00:00Z' };

/** The failure injected into sends (test/support/partial-send.ts). */
const failure: PartialSendFailure = { at: undefined, failed: 0 };

beforeAll(async () => {
  env = await TestWorkflowEnvironment.createTimeSkipping({
    server: { executable: { type: 'existing-path', path: testServerPath() } },
  });
  h = await createSinkHarness('perkey');
  worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowBundle: await workflowBundle(),
    activities: createActivities(activityDeps(h, partlyFailingProducer(h, failure))),
  });
  running = worker.run();
  ids = await seedInterleavedKeys(h.pool, h.topics.leads, EVENTS, KEYS, 5);
}, 120_000);

afterAll(async () => {
  worker?.shutdown();
  await running;
  await h?.close();
  await env?.teardown();
});

/** Each key's replayed event ids as the target topic holds them (a key stays on one partition). */
async function byKey(topic: string, expected: number): Promise<Map<string, number[]>> {
  const messages = await readTopic(h.kafka, topic, expected);
  const keys = new Map<string, number[]>();
  for (const m of messages) {
    const list = keys.get(m.key as string) ?? [];
    list.push(m._replayed_from_event_id as number);
    keys.set(m.key as string, list);
  }
  return keys;
}

/** The journal's ids of each key, in order. */
async function journalOrder(): Promise<Map<string, number[]>> {
  const { rows } = await h.pool.query<{ id: string; key: string }>(
    'SELECT id, kafka_key AS key FROM event_journal WHERE id = ANY($1::bigint[]) ORDER BY id',
    [ids],
  );
  const keys = new Map<string, number[]>();
  for (const row of rows) keys.set(row.key, [...(keys.get(row.key) ?? []), Number(row.id)]);
  return keys;
}

/** A fresh target topic, with the failure armed to hit the send holding event `failAt`. */
async function target(name: string, failAt: number | undefined): Promise<string> {
  const topic = `${h.topics.leads}.${name}`;
  await ensureTopics(h.kafka, [topic], 3);
  failure.at = failAt;
  return topic;
}

/** Adjacent repeats dropped: what a consumer sees once it ignores a message equal to the one before it. */
const collapse = (list: number[]) => list.filter((id, i) => i === 0 || id !== list[i - 1]);

it('a range replay in per_key order keeps each key in journal order through a partial send and its retry', async () => {
  // The second wave of the fourth page of 6 (chunks of two pages): the retry resumes mid-chunk and mid-page.
  const topic = await target('per-key', ids[22]);
  const input: RangeReplayInput = {
    ...window,
    source: 'range',
    targetTopic: topic,
    ordering: 'per_key',
    pageSize: 6,
    pagesPerCall: 2,
  };
  const result = await env.client.workflow.execute('rangeReplayWorkflow', {
    taskQueue,
    workflowId: 'replay-range-per-key',
    args: [input],
  });
  expect(failure.failed).toBe(1);
  expect(result).toMatchObject({ status: 'completed', matched: EVENTS, published: EVENTS, failed: 0 });
  const got = await byKey(topic, EVENTS);
  const journal = await journalOrder();
  for (const [key, order] of journal) {
    const seen = got.get(key)!;
    expect({ key, ids: collapse(seen) }).toEqual({ key, ids: order });
    expect(seen.length - order.length).toBeLessThanOrEqual(1); // at most the event of the failed wave, once more
  }
  // The failed wave had written lead-a's event: it is repeated, back to back.
  expect(got.get('lead-a')!.length + got.get('lead-b')!.length).toBeGreaterThan(
    journal.get('lead-a')!.length + journal.get('lead-b')!.length,
  );
});

it('without per_key, the same partial send puts an older event of a key after a newer one', async () => {
  const topic = await target('page-order', ids[22]);
  const input: RangeReplayInput = { ...window, source: 'range', targetTopic: topic, pageSize: 6, pagesPerCall: 2 };
  await env.client.workflow.execute('rangeReplayWorkflow', {
    taskQueue,
    workflowId: 'replay-range-page-order',
    args: [input],
  });
  expect(failure.failed).toBe(2);
  const got = await byKey(topic, EVENTS);
  const backwards = [...got.values()].some((list) => list.some((id, i) => i > 0 && id < list[i - 1]));
  expect(backwards).toBe(true);
});

it('a batch replay in per_key order sends ids in journal order, whatever order they were given in', async () => {
  const topic = await target('per-key-batch', ids[24]); // the second wave of the third page
  const input: BatchReplayInput = { ids: [...ids].reverse(), source: 'batch', targetTopic: topic, ordering: 'per_key' };
  const result = await env.client.workflow.execute('batchReplayWorkflow', {
    taskQueue,
    workflowId: 'replay-batch-per-key',
    args: [{ ...input, pageSize: 10 }],
  });
  expect(failure.failed).toBe(3);
  expect(result).toMatchObject({ requested: EVENTS, published: EVENTS, refused: [] });
  const got = await byKey(topic, EVENTS);
  for (const [key, order] of await journalOrder())
    expect({ key, ids: collapse(got.get(key)!) }).toEqual({ key, ids: order });
  const audit = await h.pool.query('SELECT filter FROM replay_audit WHERE workflow_id = $1', ['replay-batch-per-key']);
  expect(audit.rows[0].filter).toMatchObject({ ordering: 'per_key' });
});

// Last in this file: it adds archived rows to the window the tests above replay.
it('per_key refuses a range whose archive pass cannot keep journal order, dry run included', async () => {
  await h.pool.query(
    `INSERT INTO event_journal (tenant_id, topic, payload, received_at, kafka_key)
     SELECT 'acme', $1, jsonb_build_object('tenant_id', 'acme', 'old', g), '2020-01-01'::timestamptz + make_interval(secs => g), 'lead-a'
       FROM generate_series(1, 5) AS g`,
    [h.topics.leads],
  );
  // Archived but not yet removed from the journal: what maintenance leaves between its archive and its drop.
  await archiveWindow(h.pool, h.archive, {
    segment: 'per-key-moving',
    from: '2020-01-01T00:00:00Z',
    before: '2020-02-01T00:00:00Z',
    keep: true,
  });
  const topic = await target('per-key-refused', undefined);
  for (const dryRun of [true, false]) {
    const err = await env.client.workflow
      .execute('rangeReplayWorkflow', {
        taskQueue,
        workflowId: `replay-range-per-key-refused-${dryRun}`,
        args: [{ ...window, source: 'range', targetTopic: topic, ordering: 'per_key', dryRun }],
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect((err as WorkflowFailedError).cause?.cause).toMatchObject({
      type: 'InvalidRequest',
      message: expect.stringMatching(/^ordering per_key: archiving of per-key-moving is under way/),
    });
  }
  expect(await topicSize(h.kafka, topic)).toBe(0);
});

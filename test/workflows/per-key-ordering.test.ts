import { WorkflowFailedError } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { createActivities } from '../../activities';
import { ensureTopics } from '../../shared/kafka';
import type { BatchReplayInput, RangeReplayInput } from '../../workflows/definitions';
import { topicSize } from '../support/journal';
import { archiveWindow } from '../../bench/support/archive';
import {
  collapseRepeats,
  keyOrders,
  partlyFailingProducer,
  seedInterleavedKeys,
  type PartialSendFailure,
} from '../support/partial-send';
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

/** A fresh target topic, with the failure armed to hit the send holding event `failAt`. */
async function target(name: string, failAt: number | undefined): Promise<string> {
  const topic = `${h.topics.leads}.${name}`;
  await ensureTopics(h.kafka, [topic], 3);
  failure.at = failAt;
  return topic;
}

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
  const { journal, seen: got } = await keyOrders(h.pool, h.kafka, topic, ids);
  for (const [key, order] of journal) {
    const seen = got.get(key)!;
    expect({ key, ids: collapseRepeats(seen) }).toEqual({ key, ids: order });
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
  const { seen: got } = await keyOrders(h.pool, h.kafka, topic, ids);
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
  const { journal, seen: got } = await keyOrders(h.pool, h.kafka, topic, ids);
  for (const [key, order] of journal) expect({ key, ids: collapseRepeats(got.get(key)!) }).toEqual({ key, ids: order });
  const audit = await h.pool.query('SELECT filter FROM replay_audit WHERE workflow_id = $1', ['replay-batch-per-key']);
  expect(audit.rows[0].filter).toMatchObject({ ordering: 'per_key' });
});

it('a cold range replay in per_key order keeps each key in journal order through a partial send in its archive pass', async () => {
  // 2019: fifteen events in January (archived, gone from the journal), then fifteen in June (in the journal), their
  // keys interleaved; ids ascending with time, so the archive pass sends before the journal pass, in id order.
  const { rows } = await h.pool.query<{ id: string; key: string }>(
    `INSERT INTO event_journal (tenant_id, topic, payload, received_at, kafka_key, kafka_key_bytes)
     SELECT 'acme', $1, jsonb_build_object('tenant_id', 'acme', 'cold', g, 'key', k),
            (CASE WHEN g < 15 THEN '2019-01-01' ELSE '2019-06-01' END)::timestamptz + make_interval(secs => g),
            k, convert_to(k, 'UTF8')
       FROM generate_series(0, 29) AS g, LATERAL (SELECT ($2::text[])[1 + g % 3] AS k) AS keys
      ORDER BY g
     RETURNING id, kafka_key AS key`,
    [h.topics.leads, KEYS.slice(0, 3)],
  );
  const cold = rows.map((r) => ({ id: Number(r.id), key: r.key })).sort((a, b) => a.id - b.id);
  await archiveWindow(h.pool, h.archive, {
    segment: 'per-key-cold',
    from: '2019-01-01T00:00:00Z',
    before: '2019-02-01T00:00:00Z',
  });
  // The second wave of the second page of the archive pass (pages of 6, three keys: two events per key a page).
  const topic = await target('per-key-cold', cold[9].id);
  const failedBefore = failure.failed;
  const result = await env.client.workflow.execute('rangeReplayWorkflow', {
    taskQueue,
    workflowId: 'replay-range-per-key-cold',
    args: [
      {
        start: '2019-01-01T00:00:00Z',
        end: '2020-01-01T00:00:00Z',
        source: 'range',
        targetTopic: topic,
        ordering: 'per_key',
        pageSize: 6,
        pagesPerCall: 2,
      } satisfies RangeReplayInput,
    ],
  });
  expect(failure.failed).toBe(failedBefore + 1);
  expect(result).toMatchObject({ status: 'completed', matched: 30, failed: 0 });
  const { seen } = await keyOrders(h.pool, h.kafka, topic, [], 30);
  for (const key of KEYS.slice(0, 3)) {
    const order = cold.filter((e) => e.key === key).map((e) => e.id);
    const got = seen.get(key)!;
    expect({ key, ids: collapseRepeats(got) }).toEqual({ key, ids: order });
    expect(got.length - order.length).toBeLessThanOrEqual(1);
  }
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

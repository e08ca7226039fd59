import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { WorkflowFailedError } from '@temporalio/client';
import { replayTransform } from '../../journal/transform';
import { ensureTopics } from '../../shared/kafka';
import type { BatchReplayInput, RangeReplayInput } from '../../workflows/definitions';
import { readTopic, topicSize } from '../support/journal';
import { journalPayloads } from '../support/payloads';
import type { SinkHarness } from '../support/sink';
import { createTimeSkippingWorld } from '../support/temporal';

/**
 * Transform on replay (time-skipping, real activities on Postgres and Kafka): each payload is patched before it is
 * republished, the lineage names the transform, an event the patch cannot apply to is failed with its reason while
 * the others go out, and a dry run shows the sample before and after.
 */
let env: TestWorkflowEnvironment;
let h: SinkHarness;
let close: () => Promise<void>;
let ids: number[];
const taskQueue = 'replay-transform-test';

// A rename and an addition, guarded by a test: the leads whose kind is not "lead" fail the test operation.
const transform = replayTransform([
  { op: 'test', path: '/kind', value: 'lead' },
  { op: 'move', from: '/name', path: '/full_name' },
  { op: 'add', path: '/channel', value: 'web' },
]);
const payloads = Array.from({ length: 24 }, (_, i) => ({
  tenant_id: 'acme',
  kind: i % 6 === 5 ? 'deal' : 'lead',
  name: `Lead ${i}`,
  n: i,
}));
const failing = () => ids.filter((_, i) => payloads[i].kind !== 'lead');

beforeAll(async () => {
  ({ env, h, close } = await createTimeSkippingWorld('transform', taskQueue));
  ids = await journalPayloads(h.pool, 'acme', h.topics.leads, payloads);
});
afterAll(() => close?.());

const window = { start: '2000-01-01T00:00:00Z', end: '2100-01-01T00:00:00Z' };
const audit = async (workflowId: string) =>
  (await h.pool.query('SELECT * FROM replay_audit WHERE workflow_id = $1', [workflowId])).rows[0];

it('a range replay sends each payload patched, names the transform in the lineage, fails the events it cannot patch', async () => {
  const topic = `${h.topics.leads}.transformed`;
  await ensureTopics(h.kafka, [topic], 3);
  const input: RangeReplayInput = { ...window, source: 'range', targetTopic: topic, transform, pageSize: 5 };
  const result = await env.client.workflow.execute('rangeReplayWorkflow', {
    taskQueue,
    workflowId: 'replay-range-transformed',
    args: [input],
  });
  const sent = ids.length - failing().length;
  expect(result).toMatchObject({ status: 'completed', matched: ids.length, published: sent, failed: failing().length });
  expect((result as { transform_failures: { id: number }[] }).transform_failures.map((f) => f.id)).toEqual(failing());
  const messages = await readTopic(h.kafka, topic, sent);
  expect(messages).toHaveLength(sent);
  for (const { _headers, ...m } of messages) {
    const i = ids.indexOf(m._replayed_from_event_id as number);
    expect(m).toEqual({
      tenant_id: 'acme',
      kind: 'lead',
      full_name: `Lead ${i}`,
      n: i,
      channel: 'web',
      _replayed_from_event_id: ids[i],
      _replay_source: 'range',
      _replay_id: 'replay-range-transformed',
      _replay_count: 1,
      _replay_transform: transform.id,
    });
    expect((_headers as Record<string, Buffer>)['x-replay-transform'].toString()).toBe(transform.id);
  }
  const row = await audit('replay-range-transformed');
  expect(row).toMatchObject({ status: 'completed', published: sent, failed: failing().length, filter: { transform } });
  expect(row.error).toContain(`Event ${failing()[0]}: transform ${transform.id}: operation 0 (test /kind) failed`);
});

it('a dry run previews the sample before and after, with the reason for an event the patch fails on', async () => {
  const topic = `${h.topics.leads}.transformed-dry`;
  await ensureTopics(h.kafka, [topic], 3);
  const result = (await env.client.workflow.execute('rangeReplayWorkflow', {
    taskQueue,
    workflowId: 'replay-range-transformed-dry',
    args: [{ ...window, source: 'range', targetTopic: topic, transform, dryRun: true }],
  })) as { sample: Array<{ id: number; payload: object; transformed?: object; transform_error?: string }> };
  expect(result).toMatchObject({ status: 'dry_run', matched: ids.length, transform });
  expect(result.sample.map((r) => r.id)).toEqual(ids.slice(0, 10));
  expect(result.sample[0]).toMatchObject({
    payload: { name: 'Lead 0', kind: 'lead' },
    transformed: { full_name: 'Lead 0', kind: 'lead', channel: 'web', n: 0, tenant_id: 'acme' },
  });
  expect(result.sample[0].transformed).not.toHaveProperty('name');
  expect(result.sample[5]).toMatchObject({
    payload: { kind: 'deal' },
    transform_error: expect.stringMatching(/test \/kind/),
  });
  expect(result.sample[5]).not.toHaveProperty('transformed');
  expect(await topicSize(h.kafka, topic)).toBe(0);
});

it('a batch replay lists the events the patch fails on among the refused, with the reason, and sends the rest', async () => {
  const topic = `${h.topics.leads}.transformed-batch`;
  await ensureTopics(h.kafka, [topic], 3);
  const batch = ids.slice(0, 12);
  const input: BatchReplayInput = { ids: batch, source: 'batch', targetTopic: topic, transform, pageSize: 4 };
  const result = await env.client.workflow.execute('batchReplayWorkflow', {
    taskQueue,
    workflowId: 'replay-batch-transformed',
    args: [input],
  });
  const refused = batch.filter((id) => failing().includes(id));
  expect(result).toMatchObject({ published: batch.length - refused.length, unknown_ids: [] });
  expect(result.refused).toEqual(
    refused.map((id) => ({
      id,
      reason: expect.stringMatching(new RegExp(`^Event ${id}: transform ${transform.id}: `)),
    })),
  );
  const messages = await readTopic(h.kafka, topic, batch.length - refused.length);
  expect(messages.every((m) => m.channel === 'web' && m._replay_transform === transform.id)).toBe(true);
  expect(await audit('replay-batch-transformed')).toMatchObject({ filter: { transform }, failed: refused.length });
});

it('a single replay the patch fails on fails as TransformFailed, sending nothing', async () => {
  const topic = `${h.topics.leads}.transformed-single`;
  await ensureTopics(h.kafka, [topic], 1);
  const run = env.client.workflow.execute('replayEventWorkflow', {
    taskQueue,
    workflowId: 'replay-event-transformed',
    args: [{ eventId: failing()[0], source: 'operator_api', targetTopic: topic, transform }],
  });
  const err = await run.catch((e: unknown) => e);
  expect(err).toBeInstanceOf(WorkflowFailedError);
  expect((err as WorkflowFailedError).cause?.cause).toMatchObject({ type: 'TransformFailed' });
  expect(await topicSize(h.kafka, topic)).toBe(0);
  expect(await audit('replay-event-transformed')).toMatchObject({ status: 'failed', filter: { transform } });
});

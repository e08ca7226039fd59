import { progressQuery, type ReplayProgress } from '../../workflows/definitions';
import { closedWorkflow, json, replayRowsOf, type ApiEnv, type WorkflowDetail } from '../support/api';
import { createShardedApiEnv, settled, type ShardedApiEnv } from '../support/sharded-api';
import { eventually } from '../support/sink';

/**
 * Adversarial review 16, a sharded range replay whose child fails (commit 0b5eaf7).
 *
 * Invariant: a child that fails non-retryably yields a FAILED replay with an audit row, and that row counts what the
 * children counted: audit.published == the sum of the children's own final counts, never less than GET /replays/:id
 * showed before, never more than the replay rows journaled for the replay.
 *
 * Attack: the last of three throttled children (1 event/s each) meets an event larger than its topic now accepts
 * (max.message.bytes lowered after it was journaled): Kafka refuses it, the page fails non-retryable (InvalidRequest),
 * the child fails, the coordinator cancels the two others and writes the audit row. Holds (1 run of 1).
 */
let env: ApiEnv;
let leads: string;
let window: { start: string; end: string };
let post: ShardedApiEnv['post'];

beforeAll(async () => {
  ({ env, window, post } = await createShardedApiEnv('attack16-failed-child', 3, 29));
  leads = env.h.topics.leads;
  // One large lead at the end of the range (the last child's), journaled as ingest would have; then the topic shrinks.
  await env.h.pool.query(
    `INSERT INTO event_journal (tenant_id, topic, payload, received_at, kafka_key, kafka_key_bytes)
     VALUES ('acme', $1, jsonb_build_object('tenant_id', 'acme', 'name', repeat('x', 20000)), $2::timestamptz - interval '100 ms', 'big', convert_to('big', 'UTF8'))`,
    [leads, window.end],
  );
  const admin = env.h.kafka.admin();
  await admin.connect();
  await admin.alterConfigs({
    validateOnly: false,
    resources: [{ type: 2, name: leads, configEntries: [{ name: 'max.message.bytes', value: '10000' }] }],
  });
  await admin.disconnect();
});

afterAll(() => env?.close());

it('fails the replay when a child fails, with an audit row counting what every child counted', async () => {
  const res = await post('/replay/range', { ...window, topic: leads, max_events_per_second: 3 });
  expect(res.statusCode).toBe(202);
  const workflowId = json<{ workflow_id: string }>(res).workflow_id;
  const childIds = [0, 1, 2].map((i) => `${workflowId}-shard-${i}`);

  // Read 1: the running replay's view, once something has been published.
  const shown = await eventually(async () => {
    const r = await env.app.inject({ method: 'GET', url: `/replays/${encodeURIComponent(workflowId)}` });
    const body = json<WorkflowDetail & { progress: ReplayProgress | null }>(r);
    return (body.progress?.published ?? 0) >= 3 ? body.progress!.published : undefined;
  }, 'something published');

  const closed = await closedWorkflow(env.app, workflowId, {}, 150_000);
  expect(closed.workflow_status).toBe('FAILED');
  const own = await Promise.all(childIds.map((id) => env.client.workflow.getHandle(id).query(progressQuery)));
  const counted = own.reduce((sum, p) => sum + p.published, 0);
  const journaled = await settled(
    async () => (await replayRowsOf(env.h, workflowId)).length,
    'the replay rows to be journaled',
    2_000,
  );
  expect(closed.audit).toMatchObject({ status: 'failed', published: counted });
  expect(counted).toBeGreaterThanOrEqual(shown);
  expect(counted).toBeLessThanOrEqual(journaled);
}, 240_000);

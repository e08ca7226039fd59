import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { ensureTopics } from '../../shared/kafka';
import type { RangeReplayInput } from '../../workflows/definitions';
import { readTopic, topicSize } from '../support/journal';
import { journalPayloads } from '../support/payloads';
import type { SinkHarness } from '../support/sink';
import { createTimeSkippingWorld } from '../support/temporal';

/** A range replay with a payload filter (time-skipping, real activities): only matching rows are republished. */
let env: TestWorkflowEnvironment;
let h: SinkHarness;
let close: () => Promise<void>;
let ids: number[];
const taskQueue = 'range-payload-filter-test';
const FILTER = '$.source == "trade-show" && $.lead_id > 200';

// Matching rows are spread among the others, so that filtered keyset pages skip rows both within and between pages.
const payloads = Array.from({ length: 60 }, (_, i) => ({
  source: i % 4 === 0 ? 'web' : 'trade-show',
  lead_id: i % 3 === 0 ? 100 + i : 300 + i,
  contact: { n: i },
}));
const matching = () => ids.filter((_, i) => payloads[i].source === 'trade-show' && payloads[i].lead_id > 200);

beforeAll(async () => {
  ({ env, h, close } = await createTimeSkippingWorld('rangefilter', taskQueue));
  ids = await journalPayloads(h.pool, 'acme', h.topics.leads, payloads);
});
afterAll(() => close?.());

const start = (workflowId: string, input: Partial<RangeReplayInput>) =>
  env.client.workflow.start('rangeReplayWorkflow', {
    taskQueue,
    workflowId,
    args: [{ start: '2000-01-01T00:00:00Z', end: '2100-01-01T00:00:00Z', source: 'range', ...input }],
  });

it('republishes only the rows the payload filter matches, each once, across filtered pages', async () => {
  const topic = `${h.topics.leads}.filtered`;
  await ensureTopics(h.kafka, [topic], 3);
  const expected = matching();
  expect(expected.length).toBeGreaterThan(10);
  expect(expected.length).toBeLessThan(ids.length);
  const handle = await start('replay-range-filtered', {
    tenantId: 'acme',
    payloadFilter: FILTER,
    targetTopic: topic,
    pageSize: 4,
    pagesPerCall: 2,
  });
  const result = await handle.result();
  expect(result).toMatchObject({
    status: 'completed',
    matched: expected.length,
    published: expected.length,
    failed: 0,
  });
  const messages = await readTopic(h.kafka, topic, expected.length);
  expect(messages.map((m) => m._replayed_from_event_id as number).sort((a, b) => a - b)).toEqual(expected);
  for (const m of messages) {
    expect(m).toMatchObject({ source: 'trade-show', _replay_id: 'replay-range-filtered' });
    expect(m.lead_id as number).toBeGreaterThan(200);
  }
  const audit = await h.pool.query('SELECT filter, published FROM replay_audit WHERE workflow_id = $1', [
    'replay-range-filtered',
  ]);
  expect(audit.rows[0]).toMatchObject({ filter: { payloadFilter: FILTER }, published: expected.length });
});

it('a dry run with the filter counts the matches, shows the first ten and publishes nothing', async () => {
  const topic = `${h.topics.leads}.filtered-dry`;
  await ensureTopics(h.kafka, [topic], 3);
  const result = await (
    await start('replay-range-filtered-dry', { payloadFilter: FILTER, targetTopic: topic, dryRun: true })
  ).result();
  expect(result).toMatchObject({
    status: 'dry_run',
    matched: matching().length,
    by_tenant: { acme: matching().length },
  });
  expect((result as { sample: { id: number }[] }).sample.map((r) => r.id)).toEqual(matching().slice(0, 10));
  expect(await topicSize(h.kafka, topic)).toBe(0);
});

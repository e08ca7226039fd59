import { ensureTopics } from '../../shared/kafka';
import { closedWorkflow, createApiEnv, json, publishedBy, type ApiEnv } from '../support/api';
import { uniqueSuffix } from '../support/env';
import { seedJournal } from '../support/journal';

/**
 * Issue 11, point 7, for replays without a target: each event goes back to the topic it was ingested from, and that
 * topic must be allowed too (REPLAY_TARGET_TOPICS, default the ingested topics). A single replay is refused up front;
 * a batch or a range is accepted (the API cannot tell every event's topic beforehand) and its events of a topic that
 * is not allowed are refused by the publishing activity, reported in the result and the audit row, and never sent.
 * The real API, worker, Postgres and Kafka; `outside` exists on the broker but is neither ingested nor allowed.
 */
const outside = `test.${uniqueSuffix()}.outside`;
const range = { start: '2000-01-01T00:00:00Z', end: '2100-01-01T00:00:00Z' };
let env: ApiEnv;
let allowedIds: number[];
let outsideIds: number[];

beforeAll(async () => {
  env = await createApiEnv('api-own-topic', {
    ingest: false,
    env: { API_REPLAY_RATE_LIMIT_PER_MINUTE: '100000', API_REPLAY_WAIT_MS: '0' },
  });
  await ensureTopics(env.h.kafka, [outside], 1);
  allowedIds = await seedJournal(env.h.pool, 3, { topics: [env.h.topics.leads], tenants: ['acme'] });
  outsideIds = await seedJournal(env.h.pool, 2, { topics: [outside], tenants: ['acme'] });
}, 120_000);

afterAll(async () => {
  const admin = env.h.kafka.admin();
  await admin.connect();
  await admin.deleteTopics({ topics: [outside] }).catch(() => undefined);
  await admin.disconnect();
  await env?.close();
});

const post = (url: string, payload?: object) =>
  env.app.inject({ method: 'POST', url, headers: { 'x-requested-by': 'test' }, ...(payload ? { payload } : {}) });
const RULE = 'replays publish only to the topics REPLAY_TARGET_TOPICS lists';

it('a single replay of an event whose own topic is not allowed is a 400 naming the topic', async () => {
  const res = await post(`/replay/${outsideIds[0]}`);
  expect(res.statusCode).toBe(400);
  expect(json(res).message).toBe(`topic of event ${outsideIds[0]} "${outside}" refused: ${RULE}`);
});

it('a batch without a target reports the events of a topic not allowed as refused, and publishes none of them', async () => {
  const res = await post('/replay/batch', { ids: [...allowedIds, ...outsideIds] });
  expect(res.statusCode).toBe(202);
  const workflowId = json(res).workflow_id as string;
  const detail = await closedWorkflow(env.app, workflowId);
  expect(detail.result).toMatchObject({ status: 'completed', requested: 5, published: 3, unknown_ids: [] });
  expect((detail.result as { refused: unknown }).refused).toEqual(
    outsideIds.map((id) => ({ id, reason: expect.stringContaining(`topic "${outside}" refused: ${RULE}`) })),
  );
  expect(detail.audit).toMatchObject({ status: 'completed', published: 3, failed: 2 });
  expect(detail.audit!.error).toContain(`"${outside}" (2)`);
  expect(await publishedBy(env.h, outside, workflowId)).toEqual([]);
  expect(await publishedBy(env.h, env.h.topics.leads, workflowId)).toHaveLength(3);
});

it('a range without a target or topic filter counts the refused events by topic, and publishes none of them', async () => {
  const res = await post('/replay/range', range);
  expect(res.statusCode).toBe(202);
  const workflowId = json(res).workflow_id as string;
  const detail = await closedWorkflow(env.app, workflowId);
  expect(detail.result).toMatchObject({
    status: 'completed',
    matched: 5,
    published: 3,
    failed: 2,
    refused_topics: { [outside]: 2 },
  });
  expect(detail.audit).toMatchObject({ status: 'completed', matched: 5, published: 3, failed: 2 });
  expect(detail.audit!.error).toContain(`"${outside}" (2)`);
  expect(await publishedBy(env.h, outside, workflowId)).toEqual([]);
  expect(await publishedBy(env.h, env.h.topics.leads, workflowId)).toHaveLength(3);
});

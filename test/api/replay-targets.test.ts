import { ensureTopics } from '../../shared/kafka';
import { createApiEnv, json, type ApiEnv } from '../support/api';
import { uniqueSuffix } from '../support/env';

/**
 * Invariant 8: a replay to a topic Kafka does not have is refused before any workflow starts (it used to answer 202
 * and leave the publish activity retrying for 20 minutes). No worker runs here: nothing may reach the task queue.
 */
// Allowed targets (REPLAY_TARGET_TOPICS) that the broker lacks: the allow-list passes them, Kafka does not.
const missing = `test.${uniqueSuffix()}.missing`;
const gone = `test.${uniqueSuffix()}.gone`;
const fresh = `test.${uniqueSuffix()}.fresh`;

let env: ApiEnv;
let eventId: number;
let orphanId: number;
const created: string[] = [];

beforeAll(async () => {
  env = await createApiEnv('api-targets', {
    ingest: false,
    worker: false,
    env: {
      API_REPLAY_RATE_LIMIT_PER_MINUTE: '100000',
      API_REPLAY_WAIT_MS: '0',
      REPLAY_TARGET_TOPICS: ['no.such.topic', missing, gone, fresh].join(','),
    },
  });
  const insert = (topic: string) =>
    env.h.pool
      .query<{ id: string }>(
        `INSERT INTO event_journal (tenant_id, topic, payload) VALUES ('acme', $1, '{"tenant_id":"acme"}') RETURNING id`,
        [topic],
      )
      .then((r) => Number(r.rows[0].id));
  eventId = await insert(env.h.topics.leads);
  orphanId = await insert(gone);
});

afterAll(async () => {
  if (created.length) {
    const admin = env.h.kafka.admin();
    await admin.connect();
    await admin.deleteTopics({ topics: created }).catch(() => undefined);
    await admin.disconnect();
  }
  await env?.close();
});

const post = (url: string, payload?: object) =>
  env.app.inject({ method: 'POST', url, headers: { 'x-requested-by': 'test' }, ...(payload ? { payload } : {}) });

async function workflowsStarted(): Promise<number> {
  const { count } = await env.client.workflow.count(`TaskQueue='${env.taskQueue}'`);
  return count;
}

it('POST /replay/:id?target_topic=no.such.topic answers 400 naming the topic (was 202), and starts nothing', async () => {
  const res = await post(`/replay/${eventId}?target_topic=no.such.topic`);
  expect(res.statusCode).toBe(400);
  expect(json(res).message).toContain('target_topic "no.such.topic" does not exist in Kafka');
  expect(await workflowsStarted()).toBe(0);
});

it('batch and range replays to a missing target_topic answer 400 naming it', async () => {
  const batch = await post('/replay/batch', { ids: [eventId], target_topic: missing });
  expect(batch.statusCode).toBe(400);
  expect(json(batch).message).toContain(`target_topic "${missing}" does not exist`);

  const range = { start: '2020-01-01T00:00:00Z', end: '2030-01-01T00:00:00Z' };
  const targeted = await post('/replay/range', { ...range, target_topic: missing });
  expect(targeted.statusCode).toBe(400);
  expect(json(targeted).message).toContain(`target_topic "${missing}" does not exist`);
  // Without a target, a range filtered on a topic republishes to that topic.
  const filtered = await post('/replay/range', { ...range, topic: missing });
  expect(filtered.statusCode).toBe(400);
  expect(json(filtered).message).toContain(`topic "${missing}" does not exist`);
  expect(await workflowsStarted()).toBe(0);
});

it('a single replay of an event whose own topic is gone answers 400 naming that topic', async () => {
  const res = await post(`/replay/${orphanId}`);
  expect(res.statusCode).toBe(400);
  expect(json(res).message).toMatch(new RegExp(`topic of event ${orphanId} "test\\.[a-z0-9]+\\.gone" does not exist`));
});

it('a topic created a moment ago is accepted although the cached list predates it', async () => {
  expect((await post(`/replay/${eventId}?target_topic=${fresh}`)).statusCode).toBe(400); // caches the topic list
  await ensureTopics(env.h.kafka, [fresh], 1);
  created.push(fresh);
  const res = await post(`/replay/${eventId}?target_topic=${fresh}`);
  expect(res.statusCode).toBe(202);
  expect(json(res).workflow_id).toMatch(new RegExp(`^replay-event-${eventId}-`));
  expect(await workflowsStarted()).toBe(1);
});

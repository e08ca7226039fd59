import { loadConfig } from '../../shared/config';
import { ensureTopics } from '../../shared/kafka';
import { bearer, buildTestApp, createApiEnv, json, type ApiEnv } from '../support/api';
import { uniqueSuffix } from '../support/env';
import { signToken } from '../support/tokens';
import type { FastifyInstance } from 'fastify';

/**
 * Issue 11, point 7: a replay publishes only to the topics REPLAY_TARGET_TOPICS allows (default: the ingested
 * KAFKA_TOPICS), and a tenant-scoped token only to the ingested topics, however wide the allow-list. Every topic
 * here exists on the broker, so each 400 is the allow-list's, not the missing-topic check's. No worker runs: an
 * accepted replay only has to start its workflow.
 */
const SECRET = 'target-allow-list-secret-0123456789';
// Exist on the broker; `extra` is allowed by REPLAY_TARGET_TOPICS but not ingested, `outside` is neither.
const extra = `test.${uniqueSuffix()}.extra`;
const outside = `test.${uniqueSuffix()}.outside`;

let env: ApiEnv;
/** The same service with the default allow-list (REPLAY_TARGET_TOPICS unset). */
let defaults: FastifyInstance;
let eventId: number;

const token = (role: string, claims: Record<string, unknown> = {}) =>
  signToken({ sub: `${role}-targets`, role, exp: Math.floor(Date.now() / 1000) + 600, ...claims }, SECRET);
const operator = bearer(token('operator'));
const acmeOperator = bearer(token('operator', { tenant_id: 'acme' }));
const range = { start: '2020-01-01T00:00:00Z', end: '2099-01-01T00:00:00Z' };

/** Single, batch and range replays of the acme event to `target`, each with the given headers. */
const replays = (app: FastifyInstance, target: string, headers: Record<string, string>) =>
  Promise.all([
    app.inject({ method: 'POST', url: `/replay/${eventId}?target_topic=${target}`, headers }),
    app.inject({ method: 'POST', url: '/replay/batch', headers, payload: { ids: [eventId], target_topic: target } }),
    app.inject({ method: 'POST', url: '/replay/range', headers, payload: { ...range, target_topic: target } }),
  ]);

beforeAll(async () => {
  env = await createApiEnv('api-allow-list', {
    ingest: false,
    worker: false,
    env: { AUTH_JWT_SECRET: SECRET, API_REPLAY_RATE_LIMIT_PER_MINUTE: '100000', API_REPLAY_WAIT_MS: '0' },
  });
  await ensureTopics(env.h.kafka, [extra, outside], 1);
  const { config } = env.h;
  expect(config.replay.targetTopics).toEqual(config.kafka.topics); // the default
  defaults = env.app;
  env.app = await buildTestApp(env.h, {
    ...config,
    replay: { ...config.replay, targetTopics: [...config.kafka.topics, extra] },
  });
  eventId = Number(
    (
      await env.h.pool.query<{ id: string }>(
        `INSERT INTO event_journal (tenant_id, topic, payload) VALUES ('acme', $1, '{"tenant_id":"acme"}') RETURNING id`,
        [env.h.topics.leads],
      )
    ).rows[0].id,
  );
}, 120_000);

afterAll(async () => {
  const admin = env.h.kafka.admin();
  await admin.connect();
  await admin.deleteTopics({ topics: [extra, outside] }).catch(() => undefined);
  await admin.disconnect();
  // createApiEnv closes the app it built (`defaults`); this one is ours to close.
  if (env.app !== defaults) await env.app.close();
  await env?.close();
});

it('REPLAY_TARGET_TOPICS defaults to KAFKA_TOPICS and is read as a comma-separated list', () => {
  expect(loadConfig({ KAFKA_TOPICS: 'a,b' }).replay.targetTopics).toEqual(['a', 'b']);
  expect(loadConfig({ KAFKA_TOPICS: 'a,b', REPLAY_TARGET_TOPICS: ' a , c ' }).replay.targetTopics).toEqual(['a', 'c']);
});

it('single, batch and range replays to a topic outside the allow-list answer 400 naming it and the variable', async () => {
  for (const res of await replays(env.app, outside, operator)) {
    expect(res.statusCode).toBe(400);
    expect(json(res).message).toBe(
      `target_topic "${outside}" refused: replays publish only to the topics REPLAY_TARGET_TOPICS lists`,
    );
  }
  // A range without a target republishes to its topic filter: the same rule.
  const filtered = await env.app.inject({
    method: 'POST',
    url: '/replay/range',
    headers: operator,
    payload: { ...range, topic: outside },
  });
  expect(filtered.statusCode).toBe(400);
  expect(json(filtered).message).toContain(`topic "${outside}" refused`);
  const { count } = await env.client.workflow.count(`TaskQueue='${env.taskQueue}'`);
  expect(count).toBe(0);
});

it('with the default allow-list, a topic that exists but is not ingested is refused', async () => {
  for (const res of await replays(defaults, extra, operator)) {
    expect(res.statusCode).toBe(400);
    expect(json(res).message).toContain(`target_topic "${extra}" refused`);
    expect(json(res).message).toContain('REPLAY_TARGET_TOPICS');
  }
  for (const res of await replays(defaults, env.h.topics.jobs, operator)) expect(res.statusCode).toBe(202);
});

it('an unscoped token may replay to every allowed topic, ingested or not', async () => {
  for (const target of [extra, env.h.topics.jobs]) {
    for (const res of await replays(env.app, target, operator)) {
      expect({ target, status: res.statusCode }).toEqual({ target, status: 202 });
    }
  }
});

it('a tenant-scoped token may replay only to the ingested topics, however wide the allow-list', async () => {
  for (const res of await replays(env.app, extra, acmeOperator)) {
    expect(res.statusCode).toBe(400);
    expect(json(res).message).toBe(
      `target_topic "${extra}" refused: a tenant-scoped token may replay only to the ingested topics (KAFKA_TOPICS)`,
    );
  }
  for (const res of await replays(env.app, env.h.topics.jobs, acmeOperator)) expect(res.statusCode).toBe(202);
});

it('an allowed topic missing on the broker is still a 400 from the broker check', async () => {
  const missing = `test.${uniqueSuffix()}.missing`;
  const app = await buildTestApp(env.h, {
    ...env.h.config,
    replay: { ...env.h.config.replay, targetTopics: [missing] },
  });
  try {
    const res = await app.inject({
      method: 'POST',
      url: '/replay/batch',
      headers: operator,
      payload: { ids: [eventId], target_topic: missing },
    });
    expect(res.statusCode).toBe(400);
    expect(json(res).message).toContain(`target_topic "${missing}" does not exist in Kafka`);
  } finally {
    await app.close();
  }
});

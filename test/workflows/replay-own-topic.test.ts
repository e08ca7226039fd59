import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { createActivities } from '../../activities';
import { ensureTopics } from '../../shared/kafka';
import { seedJournal, topicSize } from '../support/journal';
import { createSinkHarness, type SinkHarness } from '../support/sink';
import { uniqueSuffix } from '../support/env';
import { activityDeps } from '../support/temporal';

/**
 * Issue 11, point 7, at the publishing end: a replay without a target republishes each event to the topic it was
 * ingested from, and that topic must be an allowed target too (REPLAY_TARGET_TOPICS; for a tenant-scoped request,
 * the ingested KAFKA_TOPICS). The real activities on the real Postgres and Kafka, in MockActivityEnvironment: events
 * of a topic that is not allowed are reported as refused with the reason, and nothing reaches that topic.
 */
let h: SinkHarness;
// On the broker, journaled, but neither ingested nor listed in REPLAY_TARGET_TOPICS.
const outside = `test.${uniqueSuffix()}.outside`;
// On the broker and listed in REPLAY_TARGET_TOPICS, but not ingested: only an unscoped request may publish there.
const extra = `test.${uniqueSuffix()}.extra`;
let allowedIds: number[];
let outsideIds: number[];
let extraIds: number[];

beforeAll(async () => {
  h = await createSinkHarness('ownTopic');
  await ensureTopics(h.kafka, [outside, extra], 1);
  allowedIds = await seedJournal(h.pool, 3, { topics: [h.topics.leads], tenants: ['acme'], label: 'allowed' });
  outsideIds = await seedJournal(h.pool, 2, { topics: [outside], tenants: ['acme'], label: 'outside' });
  extraIds = await seedJournal(h.pool, 2, { topics: [extra], tenants: ['acme'], label: 'extra' });
}, 60_000);

afterAll(async () => {
  const admin = h.kafka.admin();
  await admin.connect();
  await admin.deleteTopics({ topics: [outside, extra] }).catch(() => undefined);
  await admin.disconnect();
  await h?.close();
});

const run = <I, O>(fn: (input: I) => Promise<O>, input: I): Promise<O> =>
  new MockActivityEnvironment({}, { logger: new DefaultLogger('ERROR') }).run(fn, input);
/** The real activities, with REPLAY_TARGET_TOPICS = the ingested topics and `extra`. */
const activities = () =>
  createActivities({
    ...activityDeps(h),
    config: { ...h.config, replay: { ...h.config.replay, targetTopics: [...h.config.kafka.topics, extra] } },
  });
const refusedFor = (topic: string, rule: string) => expect.stringContaining(`topic "${topic}" refused: ${rule}`);
const LIST_RULE = 'replays publish only to the topics REPLAY_TARGET_TOPICS lists';
const TENANT_RULE = 'a tenant-scoped token may replay only to the ingested topics (KAFKA_TOPICS)';

it('a batch page refuses the events of a topic outside the allow-list, with the reason, and publishes the rest', async () => {
  const leadsBefore = await topicSize(h.kafka, h.topics.leads);
  const result = await run(activities().replayBatchPage, {
    ids: [...allowedIds, ...outsideIds],
    source: 'batch',
    replayId: 'batch-own-topic',
  });
  expect(result.published).toBe(allowedIds.length);
  expect(result.unknown).toEqual([]);
  expect(result.refused).toEqual(outsideIds.map((id) => ({ id, reason: refusedFor(outside, LIST_RULE) })));
  expect(await topicSize(h.kafka, outside)).toBe(0);
  expect((await topicSize(h.kafka, h.topics.leads)) - leadsBefore).toBe(allowedIds.length);
});

it('for a tenant-scoped batch only the ingested topics count, however wide the allow-list', async () => {
  const scoped = await run(activities().replayBatchPage, {
    ids: extraIds,
    tenantId: 'acme',
    source: 'batch',
    replayId: 'batch-own-topic-scoped',
  });
  expect(scoped).toEqual({
    published: 0,
    unknown: [],
    refused: extraIds.map((id) => ({ id, reason: refusedFor(extra, TENANT_RULE) })),
    refusedTopics: { [extra]: extraIds.length },
    erased: [],
  });
  expect(await topicSize(h.kafka, extra)).toBe(0);
  // The same events, unscoped: the allow-list names the topic, so they go.
  const unscoped = await run(activities().replayBatchPage, {
    ids: extraIds,
    source: 'batch',
    replayId: 'batch-own-topic-unscoped',
  });
  expect(unscoped).toMatchObject({ published: extraIds.length, refused: [] });
  expect(await topicSize(h.kafka, extra)).toBe(extraIds.length);
});

it('a range chunk without a target counts the refused events by topic and sends none of them', async () => {
  const selection = { start: '2000-01-01T00:00:00Z', end: '2100-01-01T00:00:00Z', tenantId: 'acme' };
  const { filter } = await run(activities().planRange, selection);
  const extraBefore = await topicSize(h.kafka, extra);
  const scoped = await run(activities().replayRangePage, {
    filter,
    cursor: 0,
    limit: 100,
    source: 'range',
    replayId: 'range-own-topic-scoped',
    tenantScoped: true,
  });
  expect(scoped).toMatchObject({
    read: allowedIds.length + outsideIds.length + extraIds.length,
    published: allowedIds.length,
    failed: outsideIds.length + extraIds.length,
    refusedTopics: { [outside]: outsideIds.length, [extra]: extraIds.length },
    done: true,
  });
  const unscoped = await run(activities().replayRangePage, {
    filter,
    cursor: 0,
    limit: 100,
    source: 'range',
    replayId: 'range-own-topic',
  });
  expect(unscoped).toMatchObject({
    published: allowedIds.length + extraIds.length,
    failed: outsideIds.length,
    refusedTopics: { [outside]: outsideIds.length },
  });
  expect(await topicSize(h.kafka, outside)).toBe(0);
  expect((await topicSize(h.kafka, extra)) - extraBefore).toBe(extraIds.length);
});

it('a single replay of an event whose own topic is not allowed fails as InvalidRequest and sends nothing', async () => {
  const err = await run(activities().replayEvent, {
    eventId: outsideIds[0],
    source: 'operator_api',
    replayId: 'single-own-topic',
  }).catch((e: unknown) => e);
  expect(err).toMatchObject({ type: 'InvalidRequest', message: refusedFor(outside, LIST_RULE) });
  expect(await topicSize(h.kafka, outside)).toBe(0);
});

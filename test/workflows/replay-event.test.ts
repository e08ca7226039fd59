import fs from 'node:fs';
import path from 'node:path';
import { ApplicationFailure, Context } from '@temporalio/activity';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { WorkflowFailedError } from '@temporalio/client';
import { createActivities } from '../../activities';
import type { Activities } from '../../activities';
import type { RangeReplayResult } from '../../workflows/definitions';
import { readTopic } from '../support/journal';
import { ensureTopics } from '../../shared/kafka';
import { seedJournal } from '../support/journal';
import { createSinkHarness, type SinkHarness } from '../support/sink';
import { activityDeps, testServerPath, workflowBundle } from '../support/temporal';

let env: TestWorkflowEnvironment;
let h: SinkHarness;
const taskQueue = 'replay-event-test';

beforeAll(async () => {
  env = await TestWorkflowEnvironment.createTimeSkipping({
    server: { executable: { type: 'existing-path', path: testServerPath() } },
  });
  h = await createSinkHarness('replayevent', { REPLAY_MAX_HOPS: '3' });
});
afterAll(async () => {
  await h?.close();
  await env?.teardown();
});

type Real = Activities;

/** Runs a worker whose activities are the real ones, some optionally wrapped (to inject failures). */
async function withWorker<T>(wrap: (real: Real) => Partial<Real>, fn: () => Promise<T>) {
  const real = createActivities(activityDeps(h));
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowBundle: await workflowBundle(),
    activities: { ...real, ...wrap(real) },
  });
  return worker.runUntil(fn());
}

const replay = (workflowId: string, eventId: number) =>
  env.client.workflow.execute('replayEventWorkflow', {
    taskQueue,
    workflowId,
    args: [{ eventId, source: 'operator_api', requestedBy: 'test' }],
    workflowExecutionTimeout: '1d',
  });

it('retries a failing publish with exponential backoff capped at one minute, then replays once', async () => {
  const [id] = await seedJournal(h.pool, 1, { topics: [h.topics.leads], label: 'retry' });
  const attempts: { attempt: number; at: number }[] = [];
  const started = await env.currentTimeMs();
  const result = await withWorker(
    (real) => ({
      replayEvent: async (input) => {
        const { attempt } = Context.current().info;
        attempts.push({ attempt, at: await env.currentTimeMs() });
        if (attempt <= 12)
          throw ApplicationFailure.retryable('Kafka broker not available (simulated)', 'KafkaJSConnectionError');
        return real.replayEvent(input);
      },
    }),
    () => replay('replay-event-retry', id),
  );
  expect(result).toMatchObject({
    status: 'replayed',
    event_id: id,
    topic: h.topics.leads,
    workflow_id: 'replay-event-retry',
    replay_count: 1,
  });
  expect(attempts.map((a) => a.attempt)).toEqual([...Array(13).keys()].map((i) => i + 1));
  // Backoff doubles from 1 s up to the 1 min cap: 1+2+4+8+16+32 s, then 60 s six times, in (skipped) workflow time.
  const gaps = attempts.slice(1).map((a, i) => a.at - attempts[i].at);
  expect(gaps[5]).toBeGreaterThanOrEqual(gaps[0] * 16);
  expect((await env.currentTimeMs()) - started).toBeGreaterThanOrEqual((63 + 6 * 60) * 1000);
  const audit = (await h.pool.query("SELECT * FROM replay_audit WHERE workflow_id = 'replay-event-retry'")).rows[0];
  expect(audit).toMatchObject({
    kind: 'single',
    status: 'completed',
    published: 1,
    event_id: id,
    source: 'operator_api',
  });
});

it('rides out two simulated hours of Kafka outage in a range replay page and publishes each event once', async () => {
  const ids = await seedJournal(h.pool, 30, { topics: [h.topics.jobs], tenants: ['outage'], label: 'outage' });
  const target = `${h.topics.jobs}.outage`;
  await ensureTopics(h.kafka, [target], 3);
  const started = await env.currentTimeMs();
  let attempts = 0;
  const result = await withWorker(
    (real) => ({
      replayRangePage: async (input) => {
        attempts += 1;
        if ((await env.currentTimeMs()) - started < 2 * 3_600_000) {
          throw ApplicationFailure.retryable('Kafka broker not available (simulated)', 'KafkaJSConnectionError');
        }
        return real.replayRangePage(input);
      },
    }),
    () =>
      env.client.workflow.execute('rangeReplayWorkflow', {
        taskQueue,
        workflowId: 'replay-range-outage',
        args: [
          {
            start: '2000-01-01T00:00:00Z',
            end: '2100-01-01T00:00:00Z',
            tenantId: 'outage',
            targetTopic: target,
            source: 'range',
          },
        ],
        workflowExecutionTimeout: '1d',
      }) as Promise<RangeReplayResult>,
  );
  expect(result).toMatchObject({ status: 'completed', matched: 30, published: 30 });
  expect(attempts).toBeGreaterThan(15); // 1 s doubling to the 10 min cap over two hours
  const messages = await readTopic(h.kafka, target, 30);
  expect(messages.map((m) => m._replayed_from_event_id).sort((a, b) => Number(a) - Number(b))).toEqual(ids);
});

it('refuses a replay past REPLAY_MAX_HOPS without retrying, and audits the failure', async () => {
  const { rows } = await h.pool.query<{ id: number }>(
    `INSERT INTO event_journal (tenant_id, topic, payload, replay_count, replay_source)
     VALUES ('acme', $1, '{"tenant_id":"acme","_replayed_from_event_id":1,"_replay_count":3}', 3, 'range') RETURNING id`,
    [h.topics.leads],
  );
  let calls = 0;
  const err = await withWorker(
    (real) => ({
      replayEvent: async (input) => {
        calls += 1;
        return real.replayEvent(input);
      },
    }),
    () => replay('replay-event-hops', rows[0].id).catch((e: unknown) => e),
  );
  expect(err).toBeInstanceOf(WorkflowFailedError);
  const cause = (err as WorkflowFailedError).cause?.cause as ApplicationFailure;
  expect(cause.type).toBe('HopLimitExceeded');
  expect(cause.message).toMatch(/already 3 replay hop\(s\).*REPLAY_MAX_HOPS is 3/);
  expect(calls).toBe(1); // non-retryable: one attempt only
  const audit = (await h.pool.query("SELECT * FROM replay_audit WHERE workflow_id = 'replay-event-hops'")).rows[0];
  expect(audit).toMatchObject({ status: 'failed' });
  expect(audit.error).toMatch(/REPLAY_MAX_HOPS/);
});

it('fails fast with EventNotFound for an id that is not in the journal', async () => {
  const err = await withWorker(
    () => ({}),
    () => replay('replay-event-missing', 99_999_999).catch((e: unknown) => e),
  );
  expect(((err as WorkflowFailedError).cause?.cause as ApplicationFailure).type).toBe('EventNotFound');
});

it('writes its audit rows through local activities: replayEvent is the only activity scheduled, in two workflow tasks', async () => {
  const [id] = await seedJournal(h.pool, 1, { topics: [h.topics.leads], label: 'local-audit' });
  await withWorker(
    () => ({}),
    () => replay('replay-event-local-audit', id),
  );
  const events = (await env.client.workflow.getHandle('replay-event-local-audit').fetchHistory()).events ?? [];
  const scheduled = events.flatMap((e) => e.activityTaskScheduledEventAttributes?.activityType?.name ?? []);
  expect(scheduled).toEqual(['replayEvent']);
  expect(events.filter((e) => e.workflowTaskStartedEventAttributes)).toHaveLength(2);
  const markers = events.flatMap((e) => e.markerRecordedEventAttributes?.markerName ?? []);
  expect(markers.filter((name) => name === 'core_local_activity')).toHaveLength(2);
  const audit = (await h.pool.query("SELECT * FROM replay_audit WHERE workflow_id = 'replay-event-local-audit'"))
    .rows[0];
  expect(audit).toMatchObject({ kind: 'single', status: 'completed', published: 1, event_id: id });
});

it('still replays a history recorded when its audit writes were plain activities (a replay in flight at upgrade)', async () => {
  // A completed replayEventWorkflow from the dev server, recorded by the code before the change (`temporal workflow
  // show --output json`). Loading such JSON needs the Temporal packages to share one protobufjs: the root devDependency
  // protobufjs@8 makes npm hoist it (else each gets its own copy and it fails with "type must be a Type").
  const fixture = path.join(__dirname, '../fixtures/replay-event-history-audit-activities.json');
  const history: unknown = JSON.parse(fs.readFileSync(fixture, 'utf8'));
  await expect(Worker.runReplayHistory({ workflowBundle: await workflowBundle() }, history)).resolves.toBeUndefined();
});

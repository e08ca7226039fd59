import fs from 'node:fs';
import path from 'node:path';
import { MockActivityEnvironment, TestWorkflowEnvironment } from '@temporalio/testing';
import { DefaultLogger, Worker } from '@temporalio/worker';
import type { IHeaders, Kafka, Producer } from 'kafkajs';
import { createArchiveStore, type ArchiveStore } from '../../archive';
import { createActivities } from '../../activities';
import type { ArchiveChunkResult } from '../../activities/archive-range';
import type { PlannedRange } from '../../activities/range';
import { LINEAGE_HEADERS, lineageProof } from '../../journal/lineage';
import { ensureTopics } from '../../shared/kafka';
import { progressQuery, type RangeReplayInput, type RangeReplayResult } from '../../workflows/definitions';
import { archiveWindow } from '../../bench/support/archive';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';
import { activityDeps, testServerPath, workflowBundle } from '../support/temporal';

// Cold replay (docs/lifecycle.md): a range replay whose window covers archived time, with the real activities on a
// real Postgres, Kafka and archive directory, in a time-skipping environment. The invariant: every row of the window
// that matches the filters is sent exactly once, whether it is archived or in the journal, and a row sent from the
// archive is byte for byte the message a replay from Postgres sent for it before it was archived.

const PER_MONTH = 60;
const MONTHS = ['2025-01', '2025-02', '2025-03'];
const BIG = '123456789012345678901234567890.123456789012345678901234567890';

interface Seeded {
  id: number;
  tenant_id: string;
  topic: string;
  received_at: Date;
  replay_count: number;
}

/** A replayed message as Kafka holds it: raw bytes, headers as [name, base64] pairs in order. */
interface RawMessage {
  from: number;
  key: Buffer | null;
  value: string;
  headers: Array<[string, string | null]>;
}

let testEnv: TestWorkflowEnvironment;
let h: SinkHarness;
let store: ArchiveStore;
let worker: Worker;
let running: Promise<void>;
const taskQueue = 'cold-replay-test';
const seeded: Seeded[] = [];
const archivedIds = new Set<number>();
let fromPostgres: Map<number, RawMessage>;
let hotReplayId: string;
/** The producer's sends fail once when they reach this count (an injected broker failure). */
const failure = { sends: 0, at: undefined as number | undefined, failed: 0 };

beforeAll(async () => {
  testEnv = await TestWorkflowEnvironment.createTimeSkipping({
    server: { executable: { type: 'existing-path', path: testServerPath() } },
  });
  h = await createSinkHarness('coldreplay');
  store = createArchiveStore(h.config.archive);
  worker = await Worker.create({
    connection: testEnv.nativeConnection,
    taskQueue,
    workflowBundle: await workflowBundle(),
    activities: createActivities({ ...activityDeps(h, flakyProducer()), archive: store }),
  });
  running = worker.run();

  for (const month of MONTHS) seeded.push(...(await seedMonth(month, new Date(`${month}-01T00:00:00Z`))));
  seeded.push(...(await seedMonth('recent', new Date(Date.now() - 14 * 86_400_000))));
  seeded.sort((a, b) => a.id - b.id);

  // What a replay from Postgres sends for every row, before any is archived.
  const hot = await replay({ start: '2000-01-01T00:00:00Z', end: '2100-01-01T00:00:00Z', includeReplays: true });
  hotReplayId = hot.workflowId;
  fromPostgres = new Map((await hot.messages()).map((m) => [m.from, m]));
  expect(fromPostgres.size).toBe(seeded.length);

  // January and February archived and removed from the journal, as maintenance does; March and the recent rows stay.
  for (const month of MONTHS.slice(0, 2)) {
    const manifest = await archiveWindow(h.pool, store, {
      segment: `cold-${month}`,
      from: `${month}-01T00:00:00Z`,
      before: nextMonth(month),
    });
    expect(manifest.rows).toBe(PER_MONTH);
    for (const row of seeded) if (row.received_at.toISOString().startsWith(month)) archivedIds.add(row.id);
  }
  const { rows } = await h.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM event_journal');
  expect(rows[0].n).toBe(seeded.length - 2 * PER_MONTH);
}, 180_000);

afterAll(async () => {
  worker?.shutdown();
  await running;
  await h?.close();
  await testEnv?.teardown();
});

/** h.producer, but its sends fail once, at the `failure.at`-th send counted from when it is set. */
function flakyProducer(): Producer {
  return {
    ...h.producer,
    sendBatch: async (batch) => {
      if (failure.at !== undefined && ++failure.sends === failure.at) {
        failure.failed++;
        throw new Error('broker not available (simulated)');
      }
      return h.producer.sendBatch(batch);
    },
  };
}

const nextMonth = (month: string) => {
  const date = new Date(`${month}-01T00:00:00Z`);
  date.setUTCMonth(date.getUTCMonth() + 1);
  return date.toISOString();
};

/**
 * PER_MONTH rows from `from`, five hours apart: two tenants, two topics, every 7th a replay (with old lineage in its
 * payload), every 5th as journaled before key bytes and headers were kept. Payloads with numbers no double holds,
 * Unicode beyond the BMP, escapes, nesting.
 */
async function seedMonth(label: string, from: Date): Promise<Seeded[]> {
  const { rows } = await h.pool.query<Seeded>(
    `INSERT INTO event_journal (tenant_id, topic, payload, received_at, kafka_key, kafka_key_bytes, kafka_headers,
                                content_hash, replay_count, replay_source)
     SELECT t.tenant, t.topic,
            jsonb_build_object(
              'tenant_id', t.tenant, 'n', g, 'month', $1::text, 'big', ${BIG}::numeric,
              'tiny', -0.000000000000000000000000000000000000000001::numeric, 'scaled', 1.50::numeric,
              'name', 'Zoë ' || g || ' ☃ 𝄞 «ünïcödé» 日本',
              'nested', jsonb_build_object(
                'list', jsonb_build_array(1, 2.50, NULL, true, jsonb_build_object('deep', E'tab\\there "q" \\\\ nl\\n')),
                'empty', '{}'::jsonb))
            || CASE WHEN g % 7 = 0
                    THEN jsonb_build_object('_replayed_from_event_id', 1, '_replay_source', 'range',
                                            '_replay_id', 'old-' || $1 || '-' || g, '_replay_count', 1)
                    ELSE '{}'::jsonb END,
            $2::timestamptz + make_interval(hours => g * 5),
            'key-' || g,
            CASE WHEN g % 5 = 0 THEN NULL ELSE convert_to('key-' || g || '-é', 'UTF8') END,
            CASE WHEN g % 5 = 0 THEN NULL
                 ELSE jsonb_build_array(jsonb_build_array('trace-id', encode(convert_to('t-' || g, 'UTF8'), 'base64')),
                                        jsonb_build_array('empty', NULL)) END,
            CASE WHEN g % 5 = 0 THEN NULL ELSE sha256(convert_to($1 || g, 'UTF8')) END,
            CASE WHEN g % 7 = 0 THEN 1 ELSE 0 END,
            CASE WHEN g % 7 = 0 THEN 'range' END
       FROM generate_series(0, $3 - 1) AS g,
            LATERAL (SELECT CASE WHEN g % 2 = 0 THEN 'acme' ELSE 'globex' END AS tenant,
                            CASE WHEN g % 3 = 0 THEN $4 ELSE $5 END AS topic) AS t
     RETURNING id, tenant_id, topic, received_at, replay_count`,
    [label, from, PER_MONTH, h.topics.jobs, h.topics.leads],
  );
  return rows.map((r) => ({ ...r, id: Number(r.id) }));
}

let runs = 0;

/** Starts a range replay to a fresh topic of its own. */
async function startReplay(range: Partial<RangeReplayInput> & { start: string; end: string }) {
  const workflowId = `cold-test-${++runs}`;
  const targetTopic = `${h.topics.leads}.${workflowId}`;
  if (!range.dryRun) await ensureTopics(h.kafka, [targetTopic], 3);
  const handle = await testEnv.client.workflow.start('rangeReplayWorkflow', {
    taskQueue,
    workflowId,
    args: [{ source: 'range', targetTopic, ...range }],
    workflowExecutionTimeout: '30m',
  });
  return {
    handle,
    workflowId,
    /** Its result, and what it sent (read back from its topic). */
    finished: async () => {
      const result = (await handle.result()) as RangeReplayResult & { published: number; matched: number };
      return { result, messages: () => readRaw(h.kafka, targetTopic, result.published) };
    },
  };
}

/** Runs a range replay to its end. */
async function replay(range: Partial<RangeReplayInput> & { start: string; end: string }) {
  const started = await startReplay(range);
  return { ...started, ...(await started.finished()) };
}

/** Every message of a topic, raw. */
async function readRaw(kafka: Kafka, topic: string, expected: number): Promise<RawMessage[]> {
  const consumer = kafka.consumer({ groupId: `raw-${topic}-${Date.now()}` });
  const seen: RawMessage[] = [];
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const done = new Promise<void>((resolve) => {
    if (expected === 0) resolve();
    void consumer.run({
      eachMessage: async ({ message }) => {
        const from = Number(String(message.headers![LINEAGE_HEADERS.from]));
        const headers = headerPairs(message.headers!);
        seen.push({ from, key: message.key, value: message.value!.toString('utf8'), headers });
        if (seen.length >= expected) resolve();
      },
    });
  });
  await Promise.race([done, new Promise((r) => setTimeout(r, 30_000))]);
  await new Promise((r) => setTimeout(r, 1500)); // anything beyond `expected` (a duplicate) is seen too
  await consumer.disconnect();
  return seen;
}

function headerPairs(headers: IHeaders): Array<[string, string | null]> {
  return Object.entries(headers).flatMap(([name, value]) =>
    (Array.isArray(value) ? value : [value]).map((v): [string, string | null] => [
      name,
      v === undefined || v === null ? null : Buffer.from(v).toString('base64'),
    ]),
  );
}

/** Every row, originals and replays, received from `start` to now. */
const fromUntilNow = (start: string) => ({
  start,
  end: new Date(Date.now() + 3_600_000).toISOString(),
  includeReplays: true,
});

const ascending = (ids: number[]) => [...ids].sort((a, b) => a - b);

/** The seeded rows a range selects, by the same rules as the journal's query. */
function expectedIds(range: {
  start: string;
  end: string;
  tenantId?: string;
  topic?: string;
  includeReplays?: boolean;
}) {
  return seeded
    .filter(
      (r) =>
        r.received_at >= new Date(range.start) &&
        r.received_at < new Date(range.end) &&
        (range.tenantId === undefined || r.tenant_id === range.tenantId) &&
        (range.topic === undefined || r.topic === range.topic) &&
        (range.includeReplays || r.replay_count === 0),
    )
    .map((r) => r.id);
}

/** The message without what differs from one replay to another: its replay id (in the value and a header), proof. */
function comparable(message: RawMessage, replayId: string) {
  return {
    key: message.key?.toString('base64') ?? null,
    value: message.value.replace(JSON.stringify(replayId), '"<replay>"'),
    headers: message.headers.filter(([name]) => name !== LINEAGE_HEADERS.id && name !== LINEAGE_HEADERS.proof),
  };
}

it('a window over archived and journal time replays every row once, each byte for byte as from Postgres', async () => {
  const range = fromUntilNow('2025-01-10T00:00:00Z');
  const expected = expectedIds(range);
  const fromArchive = expected.filter((id) => archivedIds.has(id));
  expect(fromArchive.length).toBeGreaterThan(PER_MONTH); // part of January, all of February
  expect(fromArchive.length).toBeLessThan(2 * PER_MONTH);

  const run = await replay(range);
  expect(run.result).toMatchObject({ status: 'completed', matched: expected.length, published: expected.length });
  const messages = await run.messages();
  expect(ascending(messages.map((m) => m.from))).toEqual(expected); // each once, none outside the window

  for (const message of messages) {
    const hot = fromPostgres.get(message.from)!;
    expect(comparable(message, run.workflowId)).toEqual(comparable(hot, hotReplayId));
    // Lineage: fields in the value, headers, and a proof over the value this service can verify.
    expect(message.value).toContain(`"_replayed_from_event_id": ${message.from}`);
    expect(message.value).toContain(`"_replay_id": ${JSON.stringify(run.workflowId)}`);
    const proof = message.headers.find(([name]) => name === LINEAGE_HEADERS.proof)![1]!;
    expect(Buffer.from(proof, 'base64').toString()).toBe(lineageProof(h.lineageKey, message.value));
  }
  // Archived rows kept every digit and character: the comparison above holds them; said once more in plain words.
  const archived = messages.find((m) => archivedIds.has(m.from))!;
  expect(archived.value).toContain(BIG);
  expect(archived.value).toContain('Zoë');
  expect(archived.value).toContain('𝄞');
});

it('tenant, topic and include_replays select archived rows as they select journal rows', async () => {
  for (const filter of [
    { tenantId: 'globex' },
    { topic: h.topics.jobs },
    { tenantId: 'acme', topic: h.topics.leads, includeReplays: true },
    { includeReplays: false },
  ]) {
    const range = { start: '2024-12-01T00:00:00Z', end: '2025-03-15T00:00:00Z', ...filter };
    const expected = expectedIds(range);
    expect(expected.some((id) => archivedIds.has(id))).toBe(true);
    expect(expected.some((id) => !archivedIds.has(id))).toBe(true);
    const run = await replay(range);
    expect(run.result).toMatchObject({ matched: expected.length, published: expected.length });
    expect(ascending((await run.messages()).map((m) => m.from))).toEqual(expected);
  }
});

it('a dry run counts archived events with the journal ones, and apart', async () => {
  const range = { start: '2025-01-10T00:00:00Z', end: '2025-03-20T00:00:00Z', tenantId: 'acme', dryRun: true };
  const expected = seeded.filter((r) => expectedIds(range).includes(r.id));
  const { result } = await replay(range);
  const byTopic: Record<string, number> = {};
  for (const r of expected) byTopic[r.topic] = (byTopic[r.topic] ?? 0) + 1;
  expect(result).toEqual({
    status: 'dry_run',
    workflow_id: expect.any(String),
    matched: expected.length,
    by_topic: byTopic,
    by_tenant: { acme: expected.length },
    archived: expected.filter((r) => archivedIds.has(r.id)).length,
    archived_segments: ['cold-2025-01', 'cold-2025-02'],
    // The first matches shown, from the journal (archived rows are counted, not sampled).
    sample: expect.any(Array),
  });
  expect(expected.filter((r) => archivedIds.has(r.id)).length).toBeGreaterThan(0);
});

it('a send failing in the middle of the archive, and continue-as-new, neither repeat nor skip a row', async () => {
  const range = { start: '2000-01-01T00:00:00Z', end: '2100-01-01T00:00:00Z', includeReplays: true };
  const expected = expectedIds(range);
  failure.sends = 0;
  failure.failed = 0;
  failure.at = 40; // within January's segment: one page per call, so the 40th call fails once and is retried
  try {
    // One row per call: more calls than one run makes (CALLS_PER_RUN), so the run continues as new in the journal.
    const run = await replay({ ...range, pageSize: 1, pagesPerCall: 1 });
    expect(failure.failed).toBe(1);
    expect(run.result).toMatchObject({ matched: expected.length, published: expected.length });
    const { runId } = await run.handle.describe();
    expect(runId).not.toBe(run.handle.firstExecutionRunId);
    expect(ascending((await run.messages()).map((m) => m.from))).toEqual(expected);
  } finally {
    failure.at = undefined;
  }
}, 180_000);

it('a retried archive chunk resumes from its last heartbeat: pages heartbeated are not sent again', async () => {
  const acts = createActivities({ ...activityDeps(h), archive: store });
  const env = new MockActivityEnvironment({}, { logger: new DefaultLogger('ERROR') });
  const plan: PlannedRange = await env.run(acts.planRange, {
    start: '2000-01-01T00:00:00Z',
    end: '2025-03-01T00:00:00Z',
  });
  expect(plan.segments).toEqual(['cold-2025-01', 'cold-2025-02']);
  const targetTopic = `${h.topics.leads}.chunk-retry`;
  await ensureTopics(h.kafka, [targetTopic], 3);
  const input = {
    filter: plan.filter,
    segments: plan.segments!,
    position: { index: 0, lastId: 0, generation: 0 },
    limit: 10,
    maxPages: 100,
    budgetMs: 60_000,
    source: 'range',
    replayId: 'chunk-retry',
    targetTopic,
  };
  failure.sends = 0;
  failure.at = 6;
  const beats: ArchiveChunkResult[] = [];
  const first = new MockActivityEnvironment({}, { logger: new DefaultLogger('ERROR') });
  first.on('heartbeat', (d: ArchiveChunkResult | undefined) => d?.position && beats.push(d));
  const failing = createActivities({ ...activityDeps(h, flakyProducer()), archive: store });
  await expect(first.run(failing.replayArchivePage, input)).rejects.toThrow(/simulated/);
  failure.at = undefined;
  const last = beats.at(-1)!;
  expect(last.pages).toBe(5); // pages 1–5 sent and heartbeated, the sixth failed
  expect(last.position).toMatchObject({ index: 0, lastId: expect.any(Number) });

  const retry = new MockActivityEnvironment(
    { attempt: 2, heartbeatDetails: last },
    { logger: new DefaultLogger('ERROR') },
  );
  const result = await retry.run(acts.replayArchivePage, input);
  expect(result).toMatchObject({ done: true, read: plan.total, published: plan.total, position: { index: 2 } });
  const expected = expectedIds({ start: '2000-01-01T00:00:00Z', end: '2025-03-01T00:00:00Z' });
  expect(plan.total).toBe(expected.length);
  expect(ascending((await readRaw(h.kafka, targetTopic, expected.length)).map((m) => m.from))).toEqual(expected);
});

it('rows maintenance archives while a replay runs are sent from the archive after the journal pass', async () => {
  const range = fromUntilNow('2025-03-01T00:00:00Z');
  const expected = expectedIds(range);
  // Ten events a second: the journal pass is in March (lower ids) for seconds; meanwhile the recent rows, not yet
  // reached, are archived and removed, as a maintenance run would.
  const started = await startReplay({ ...range, maxEventsPerSecond: 10 });
  await eventually(async () => (await started.handle.query(progressQuery)).published >= 10, 'ten events sent');
  const manifest = await archiveWindow(h.pool, store, {
    segment: 'cold-recent',
    from: '2025-04-01T00:00:00Z',
    before: range.end,
  });
  expect(manifest.rows).toBe(PER_MONTH);
  expect((await started.handle.query(progressQuery)).published).toBeLessThan(PER_MONTH);
  for (const row of seeded) if (row.received_at >= new Date('2025-04-01')) archivedIds.add(row.id);

  const { result, messages } = await started.finished();
  expect(result).toMatchObject({ matched: expected.length, published: expected.length });
  expect(ascending((await messages()).map((m) => m.from))).toEqual(expected);
});

it('rows both archived and still journaled (archive done, drop not) are sent once, and counted once', async () => {
  await archiveWindow(h.pool, store, {
    segment: 'cold-2025-03-kept',
    from: '2025-03-01T00:00:00Z',
    before: '2025-04-01T00:00:00Z',
    keep: true,
  });
  // Half of it gone from the journal: the segment has rows of its own to replay, and rows the journal still holds.
  const { rows: dropped } = await h.pool.query<{ id: number }>(
    `DELETE FROM event_journal WHERE received_at >= '2025-03-01' AND received_at < '2025-04-01' AND tenant_id = 'acme'
     RETURNING id`,
  );
  expect(dropped.length).toBe(PER_MONTH / 2);
  for (const { id } of dropped) archivedIds.add(Number(id));
  const range = { start: '2025-02-10T00:00:00Z', end: '2025-04-01T00:00:00Z', includeReplays: true };
  const expected = expectedIds(range);
  const dry = await replay({ ...range, dryRun: true });
  expect(dry.result).toMatchObject({
    matched: expected.length,
    archived: expected.filter((id) => archivedIds.has(id)).length,
    archived_segments: ['cold-2025-02', 'cold-2025-03-kept'],
  });
  const run = await replay(range);
  expect(run.result).toMatchObject({ matched: expected.length, published: expected.length });
  expect(ascending((await run.messages()).map((m) => m.from))).toEqual(expected);
});

it('still replays a range replay history recorded before cold replay (a replay in flight at upgrade)', async () => {
  // A completed rate-limited rangeReplayWorkflow from the dev server, recorded by the code before cold replay
  // (`temporal workflow show --output json`): its plan has no segments and no patch marker, so no archive pass.
  const fixture = path.join(__dirname, '../fixtures/range-replay-history-before-cold-replay.json');
  const history: unknown = JSON.parse(fs.readFileSync(fixture, 'utf8'));
  await expect(Worker.runReplayHistory({ workflowBundle: await workflowBundle() }, history)).resolves.toBeUndefined();
});

import { Client, Connection } from '@temporalio/client';
import type { ChildProcess } from 'node:child_process';
import fc from 'fast-check';
import { createArchiveStore, writeSegment, type ArchiveRow, type ArchiveStore } from '../../archive';
import { subjectHash, type ErasureTarget } from '../../lifecycle/erasure-target';
import { storeErasureSubject } from '../../repository/erasure';
import { ensureServiceKey } from '../../repository/service-keys';
import { ensureTopics } from '../../shared/kafka';
import { plainRow } from '../support/archive';
import { readReplayed } from '../support/replayed';
import { createTestBucket } from '../support/s3';
import { deleteSchedule } from '../support/temporal';
import { spawnCli, untilPrinted } from '../support/ingest-process';
import { createSinkHarness, type SinkHarness } from '../support/sink';
import { uniqueSuffix } from '../support/env';

/**
 * attack30 (area A, cold replay x erasure): a cold replay (range replay over an archived S3 segment, under a rate) is
 * running on a real `worker` when an erasure of a data subject whose rows are in that segment runs and completes
 * (the segment rewritten to generation 2, generation 1 deleted).
 *
 * Invariant (docs/lifecycle.md section 5, "After it": "range and cold replays do not see the rows"; section 6: "An
 * erasure that rewrites a segment meanwhile changes its generation [...] erased rows are simply not there"): once the
 * erasure has completed, no replay publishes an erased row (a page already read when it ended aside: rows sent more
 * than 1 s after it count).
 *
 * Observed (two runs of 3 rounds; rate 27-70/s, pages of 5-20, erasure 1.5-3.5 s into the replay): each erasure
 * completed (archive_rows 30, the segment at generation 2, generation 1 deleted) and each replay still published all
 * 300 rows, matched = published = 300, the 30 erased ones included. Erased rows sent more than 1 s after the erasure
 * had completed, last run: 22 (the last 8.5 s after), 20 (7.2 s after), 2 (1.2 s after); first run (no 1 s margin):
 * 18 (4.8 s after), 1 (0.1 s), 18 (3.1 s).
 *
 * Cause: activities/archive-range.ts:244-254: replayArchivePage reads the manifest once per call and streams that
 * generation for the whole call (up to 1,000 pages or ARCHIVE_CHUNK_BUDGET_MS = 20 s, workflows/range-replay.ts:61);
 * the stream (or what the client buffered of it) outlives the rewrite and the sweep, and archived rows are never
 * checked against erased_events (repository/event-journal.ts:229 archivedReplayRows). So a cold replay keeps sending an
 * erased subject's rows for up to a call's budget after the erasure reported completed.
 */
jest.setTimeout(170_000);

const ROWS = 300;
let h: SinkHarness;
let bucket: Awaited<ReturnType<typeof createTestBucket>>;
let store: ArchiveStore;
let connection: Connection;
let client: Client;
let worker: ChildProcess | undefined;
const queue = `a30-colderase-${uniqueSuffix()}`;

beforeAll(async () => {
  h = await createSinkHarness('a30colderase');
  bucket = await createTestBucket('a30colderase');
  store = createArchiveStore({ ...h.config.archive, store: 's3', s3: bucket.config });
  connection = await Connection.connect({ address: h.config.temporal.address });
  client = new Client({ connection, namespace: h.config.temporal.namespace });
}, 120_000);

afterAll(async () => {
  worker?.kill('SIGKILL');
  for (const id of [`${queue}-dlq`, `${queue}-mnt`]) await deleteSchedule(h.config.temporal.address, id);
  await connection?.close();
  await store?.close();
  await h?.close();
});

it('a cold replay running while an erasure completes publishes no erased row after the erasure completed', async () => {
  const s3 = bucket.config;
  worker = spawnCli('worker', {
    DATABASE_URL: h.config.databaseUrl,
    KAFKA_TOPICS: h.config.kafka.topics.join(','),
    TEMPORAL_TASK_QUEUE: queue,
    DLQ_RETRY_SCHEDULE_ID: `${queue}-dlq`,
    MAINTENANCE_SCHEDULE_ID: `${queue}-mnt`,
    ARCHIVE_STORE: 's3',
    ARCHIVE_S3_ENDPOINT: s3.endpoint ?? '',
    ARCHIVE_S3_BUCKET: s3.bucket,
    ARCHIVE_S3_REGION: s3.region,
    ARCHIVE_S3_ACCESS_KEY_ID: s3.accessKeyId ?? '',
    ARCHIVE_S3_SECRET_ACCESS_KEY: s3.secretAccessKey ?? '',
    LOG_LEVEL: 'info',
  });
  await untilPrinted(worker, 'Temporal worker started');
  const plans = fc.sample(
    fc.record({
      rate: fc.integer({ min: 25, max: 60 }),
      pageSize: fc.constantFrom(5, 10, 20),
      erasureAfterMs: fc.integer({ min: 1500, max: 3500 }),
    }),
    { numRuns: Number(process.env.A30_ROUNDS ?? 3) },
  );
  const summaries: unknown[] = [];
  const leaks: Array<{ round: number; ids: number[] }> = [];
  for (const [r, plan] of plans.entries()) {
    const value = `a30-cold-subject-${r}-${uniqueSuffix()}@example.com`;
    const rows: ArchiveRow[] = [];
    const erased = new Set<number>();
    const base = 10_000 * (r + 1);
    for (let i = 1; i <= ROWS; i++) {
      const holds = i % 10 === 0;
      if (holds) erased.add(base + i);
      rows.push(
        plainRow(
          base + i,
          JSON.stringify({ tenant_id: 'acme', n: i, email: holds ? value : `keep-${i}@example.com` }),
          {
            topic: h.topics.leads,
            received_at: new Date(Date.UTC(2025, r, 1, 0, i)).toISOString().replace('Z', '000Z'),
          },
        ),
      );
    }
    await writeSegment(store, { segment: `a30_cold_erase_${r}`, table: 'event_journal', rows, expectedRows: ROWS });
    const replayId = `a30-colderase-replay-${r}-${uniqueSuffix()}`;
    const targetTopic = `${h.topics.leads}.${replayId}`;
    await ensureTopics(h.kafka, [targetTopic], 1);
    const replay = await client.workflow.start('rangeReplayWorkflow', {
      taskQueue: queue,
      workflowId: replayId,
      args: [
        {
          source: 'range',
          targetTopic,
          start: new Date(Date.UTC(2025, r, 1)).toISOString(),
          end: new Date(Date.UTC(2025, r + 1, 1)).toISOString(),
          includeReplays: true,
          maxEventsPerSecond: plan.rate,
          pageSize: plan.pageSize,
        },
      ],
      workflowExecutionTimeout: '10m',
    });
    await new Promise((res) => setTimeout(res, plan.erasureAfterMs)); // the replay is sending from generation 1

    const target: ErasureTarget = { kind: 'subject', field: 'email', value };
    const hash = subjectHash(await ensureServiceKey(h.pool, 'erasure'), target);
    await storeErasureSubject(h.pool, hash, target);
    const erasure = await client.workflow.execute('erasureWorkflow', {
      taskQueue: queue,
      workflowId: `a30-colderase-erasure-${r}-${uniqueSuffix()}`,
      args: [{ subjectHash: hash, requestedBy: 'attack30' }],
    });
    const erasedAt = Date.now();
    const result = (await Promise.race([
      replay.result(),
      new Promise((res) => setTimeout(() => res({ failed: 'not finished in 40 s' }), 40_000)),
    ])) as { published?: number };
    const messages = await readReplayed(h.kafka, targetTopic, result.published ?? ROWS);
    // More than a second after: not a page already read (a page is at most 20 rows at >= 25/s) when the erasure ended.
    const after = messages.filter((m) => erased.has(m.from) && m.timestamp > erasedAt + 1000);
    const summary = {
      round: r,
      plan,
      erasure,
      replay: result,
      messages: messages.length,
      erasedSentBefore: messages.filter((m) => erased.has(m.from) && m.timestamp <= erasedAt).length,
      erasedSentAfter: after.length,
      lastMsAfterErasure: Math.max(0, ...after.map((m) => m.timestamp - erasedAt)),
    };
    console.log(JSON.stringify(summary));
    summaries.push(summary);
    if (after.length) leaks.push({ round: r, ids: after.map((m) => m.from) });
  }
  worker.kill('SIGTERM');
  expect(leaks).toEqual([]);
});

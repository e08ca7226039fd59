import type { ArchiveRow } from '../../archive';
import { plainRow, writeJournalSegment } from '../support/archive';
import { uniqueSuffix } from '../support/env';
import { storeEmailSubject } from '../support/erasure';
import { untilPrinted } from '../support/ingest-process';
import { createProcessWorld, type ProcessWorld } from '../support/process-world';
import { readRaw } from '../support/raw-messages';
import { kafkaBrokerPid } from '../support/stack';

/**
 * attack32 (fix c174e01, "no erased row ... sent by a cold replay": each page of archived rows is checked against
 * erased_events just before it is sent; the window between that check and the send).
 *
 * Invariant (docs/lifecycle.md, erasure, "After it": range and cold replays do not see the rows): once an erasure has
 * completed, no replay publishes an erased row (a page already read when it ended aside: attack30 counts rows that
 * reach Kafka more than 1 s after it completed).
 *
 * Attack: a cold replay (range over an archived segment, 40 rows/s, pages of 20, one row in 10 of the subject) runs on
 * a real worker; the Kafka broker is frozen (SIGSTOP: a GC stall, a paused VM, a partition leader move) while the
 * replay sends a page it has just checked; the erasure of the subject runs and completes (it needs no Kafka); the
 * broker is thawed 1.5 s after. The target topic uses LogAppendTime, so each message's timestamp is when Kafka took it.
 *
 * Observed (3 of 3 runs): the erasure completed (archive_rows 30, the segment rewritten); the broker frozen 2.6-2.7 s;
 * the page stuck in its send went out at the thaw: 2 erased rows of the subject appended to the target topic 1502-1503
 * ms after the erasure reported completed (i.e. as long after as the freeze lasted past it), the replay "completed"
 * (published 278 of 300, 6 erased rows sent before the erasure, 2 after), nothing told anyone.
 * Suspected cause: activities/archive-range.ts replayArchivePage (erasuresOf, then publishChunkPage with no bound and
 * no re-check; the erasure does not wait for pages in flight, and nothing ties the send to "not erased since").
 *
 * Fixed: a barrier in Postgres (repository/erasure.ts withErasuresChecked / awaitReplaySends). Each replay page, cold
 * and hot, holds an advisory lock shared from just before its erased check until its send has ended (a send kafkajs
 * finishes after its activity gave up included); each erasure pass, once its ids are recorded, takes it exclusively
 * once. The erasure now waits for the frozen broker (it no longer completes while frozen: the broker is thawed 10 s
 * after it started, or 1.5 s after it completed), and no erased row is appended after it completed (0, and 0 ms).
 */
jest.setTimeout(180_000);

const ROWS = 300;
let w: ProcessWorld;
let frozen: number | undefined;
const queue = `a32-coldsend-${uniqueSuffix()}`;

beforeAll(async () => {
  w = await createProcessWorld('a32coldsend', queue);
}, 120_000);

afterAll(async () => {
  if (frozen) process.kill(frozen, 'SIGCONT');
  await w?.close();
});

it('a page checked before an erasure and stuck in its send while Kafka is frozen goes out after the erasure completed', async () => {
  const { h, client } = w;
  const worker = w.workers.spawn();
  await untilPrinted(worker, 'Temporal worker started');
  const suffix = uniqueSuffix();
  const value = `a32-coldsend-${suffix}@example.com`;
  const erased = new Set<number>();
  const base = 20_000_000 + Math.floor(Math.random() * 100_000) * 1000;
  const rows: ArchiveRow[] = [];
  for (let i = 1; i <= ROWS; i++) {
    const holds = i % 10 === 0;
    if (holds) erased.add(base + i);
    rows.push(
      plainRow(base + i, JSON.stringify({ tenant_id: 'acme', n: i, email: holds ? value : `keep-${i}@example.com` }), {
        topic: h.topics.leads,
        received_at: new Date(Date.UTC(2024, 2, 1, 0, i)).toISOString().replace('Z', '000Z'),
      }),
    );
  }
  await writeJournalSegment(h.archive, `a32_coldsend_${suffix.toLowerCase().replace(/[^a-z0-9]/g, '')}`, rows);
  const replayId = `a32-coldsend-replay-${suffix}`;
  const targetTopic = `${h.topics.leads}.${replayId}`;
  const admin = h.kafka.admin();
  await admin.connect();
  await admin.createTopics({
    topics: [
      {
        topic: targetTopic,
        numPartitions: 1,
        configEntries: [{ name: 'message.timestamp.type', value: 'LogAppendTime' }],
      },
    ],
    waitForLeaders: true,
  });
  await admin.disconnect();
  const hash = await storeEmailSubject(h.pool, value);

  const replay = await client.workflow.start('rangeReplayWorkflow', {
    taskQueue: queue,
    workflowId: replayId,
    args: [
      {
        source: 'range',
        targetTopic,
        start: new Date(Date.UTC(2024, 2, 1)).toISOString(),
        end: new Date(Date.UTC(2024, 3, 1)).toISOString(),
        includeReplays: true,
        maxEventsPerSecond: 40,
        pageSize: 20,
      },
    ],
    workflowExecutionTimeout: '10m',
  });
  await new Promise((res) => setTimeout(res, 1500)); // the replay is sending
  frozen = kafkaBrokerPid(h.config.kafka.brokers);
  process.kill(frozen, 'SIGSTOP');
  const frozenAt = Date.now();
  await new Promise((res) => setTimeout(res, 700)); // its next page checked and stuck in the send
  const erasing = await client.workflow.start('erasureWorkflow', {
    taskQueue: queue,
    workflowId: `a32-coldsend-erasure-${suffix}`,
    args: [{ subjectHash: hash, requestedBy: 'attack32' }],
  });
  // The broker is thawed 1.5 s after the erasure completed, or after 10 s if it is still waiting (for the stuck send).
  const ended = erasing.result().then((erasure) => ({ erasure, at: Date.now() }));
  const completedFrozen = await Promise.race([
    ended.then(() => true),
    new Promise<boolean>((res) => setTimeout(() => res(false), 10_000)),
  ]);
  await new Promise((res) => setTimeout(res, 1500));
  process.kill(frozen, 'SIGCONT');
  frozen = undefined;
  const thawedAt = Date.now();
  const { erasure, at: erasedAt } = await ended;
  const result = (await Promise.race([
    replay.result(),
    new Promise((res) => setTimeout(() => res({ failed: 'not finished in 60 s' }), 60_000)),
  ])) as { published?: number };
  const messages = (await readRaw(h.kafka, targetTopic, result.published ?? ROWS)).map((m) => ({
    from: m.from,
    appendedAt: m.timestamp, // LogAppendTime
  }));
  const after = messages.filter((m) => erased.has(m.from) && m.appendedAt > erasedAt + 1000);
  const summary = {
    erasure,
    completedFrozen,
    erasureWaitedMs: erasedAt - frozenAt,
    replay: result,
    frozenMs: thawedAt - frozenAt,
    messages: messages.length,
    erasedAppendedBefore: messages.filter((m) => erased.has(m.from) && m.appendedAt <= erasedAt).length,
    erasedAppendedAfter: after.length,
    msAfterErasure: after.map((m) => m.appendedAt - erasedAt),
  };
  console.log(JSON.stringify(summary));
  worker.kill('SIGTERM');
  expect(after.map((m) => m.from)).toEqual([]);
});

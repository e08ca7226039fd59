import type { ArchiveRow } from '../../archive';
import { plainRow, writeJournalSegment } from '../support/archive';
import { uniqueSuffix } from '../support/env';
import { storeEmailSubject } from '../support/erasure';
import { untilPrinted } from '../support/ingest-process';
import { createProcessWorld, type ProcessWorld } from '../support/process-world';
import { readRaw } from '../support/raw-messages';
import { kafkaBrokerPid, stack } from '../support/stack';

/**
 * attack38 against 922b557 (the replay-send/erasure barrier across a Postgres restart, end to end).
 *
 * Invariant (docs/lifecycle.md, "Erasure barrier"; barrier invariant 1): once an erasure workflow has completed, no
 * replay sends a row it erased.
 *
 * Attack: a cold range replay on a real worker (as attack32); the broker frozen (SIGSTOP) for 9 s, under kafkajs'
 * request timeout, while a checked page is in its send; the erasure of the subject started; 1 s later Postgres is
 * SIGKILLed (scripts/stack.sh kill postgres) and brought back (up): every holder's session and the erasure's end,
 * holders renew and delete on the pool's connections, the erasure's activities fail and are retried. The broker is
 * thawed 9 s after it froze, and Postgres is killed and brought back once more 2 s later, while the replay (2000 rows,
 * 80/s) goes on.
 *
 * Observed: held, 2 of 2 runs (passes on 922b557; kept as an end-to-end check, not a finding): the erasure completed
 * ~10 s after the freeze (archive_rows 200), the replay completed (published 1888 and 1890 of 2000: the erased rows of
 * pages checked after the ids were recorded left out), 88 and 90 erased rows appended before the erasure completed,
 * 0 after. The worker stayed up across both Postgres kills.
 * Runs alone (scripts/test.sh): it kills the stack's Postgres and freezes its broker.
 */
jest.setTimeout(900_000);

const ROWS = 2000;
let w: ProcessWorld;
let frozen: number | undefined;
const queue = `a38-pgrestart-${uniqueSuffix()}`;

beforeAll(async () => {
  w = await createProcessWorld('a38pgrestart', queue);
}, 120_000);

afterAll(async () => {
  if (frozen) process.kill(frozen, 'SIGCONT');
  await w?.close();
});

it('no erased row is appended after an erasure that ran across a Postgres restart completed', async () => {
  const { h, client } = w;
  const worker = w.workers.spawn();
  await untilPrinted(worker, 'Temporal worker started');
  const suffix = uniqueSuffix();
  const value = `a38-pgrestart-${suffix}@example.com`;
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
  await writeJournalSegment(h.archive, `a38_pgrestart_${suffix.toLowerCase().replace(/[^a-z0-9]/g, '')}`, rows);
  const replayId = `a38-pgrestart-replay-${suffix}`;
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
        maxEventsPerSecond: 80,
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
    workflowId: `a38-pgrestart-erasure-${suffix}`,
    args: [{ subjectHash: hash, requestedBy: 'attack38' }],
  });
  const ended = erasing.result().then((erasure) => ({ erasure, at: Date.now() }));
  await new Promise((res) => setTimeout(res, 1000));
  stack('kill', 'postgres');
  stack('up', 'postgres');
  const restartedAt = Date.now();
  await new Promise((res) => setTimeout(res, Math.max(0, frozenAt + 9000 - Date.now())));
  process.kill(frozen, 'SIGCONT');
  frozen = undefined;
  const thawedAt = Date.now();
  // Postgres killed again while the replay goes on after the thaw (its pages check the erasure's ids).
  await new Promise((res) => setTimeout(res, 2000));
  stack('kill', 'postgres');
  stack('up', 'postgres');
  const { erasure, at: erasedAt } = await ended;
  const result = (await Promise.race([
    replay.result(),
    new Promise((res) => setTimeout(() => res({ failed: 'not finished in 90 s' }), 90_000)),
  ])) as { published?: number };
  const messages = (await readRaw(h.kafka, targetTopic, result.published ?? ROWS)).map((m) => ({
    from: m.from,
    appendedAt: m.timestamp, // LogAppendTime
  }));
  const after = messages.filter((m) => erased.has(m.from) && m.appendedAt > erasedAt + 1000);
  const summary = {
    erasure,
    restartedMsAfterFreeze: restartedAt - frozenAt,
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

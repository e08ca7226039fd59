import pg from 'pg';
import type { Consumer } from 'kafkajs';
import type { ConsumerRestartReason } from '../../journal/kinds';
import { produceSeqLeads, type Coordinates, type SentRecord } from '../support/coordinates';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';

/**
 * A consumer that kafkajs gives up on. The CI soak lost its ingest for two minutes: after a broker restart the
 * group coordinator no longer knew the member, the offset commit failed with UNKNOWN_MEMBER_ID, which kafkajs treats
 * as not retriable — it disconnects the consumer and never starts it again (restart: false). Only the watchdog, two
 * minutes later, brought ingestion back. Here the same failure is produced on the real broker: a batch held by a lock
 * on the journal for longer than the session timeout (no heartbeat meanwhile), so the coordinator drops the member
 * and the batch's commit is refused. No lag monitor runs, so there is no watchdog: the service alone must start a
 * fresh consumer, and every record is journaled exactly once.
 */
let h: SinkHarness;

beforeAll(async () => {
  h = await createSinkHarness('consumer-crash', {
    KAFKA_SESSION_TIMEOUT_MS: '6000',
    DATABASE_STATEMENT_TIMEOUT: '60s',
  });
  await h.startIngest();
}, 60_000);
afterAll(async () => {
  await h?.close();
});

const sent: SentRecord[] = [];

async function produce(from: number, count: number): Promise<void> {
  sent.push(...(await produceSeqLeads(h.upstream, h.topics.leads, from, count)));
}

const restarts = async (reason: ConsumerRestartReason) =>
  (await h.metrics.consumerRestarts.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;

it('starts a fresh consumer when kafkajs crashes it without restart; every record is journaled exactly once', async () => {
  await produce(0, 30);
  await eventually(async () => (await h.journalCount()) === 30, 'the first 30 records journaled', 60_000);
  const first: Consumer = h.ingest!.consumer();
  // The crash listener used to set process.exitCode = 1; the suites share one process (runInBand), and an earlier
  // one may have set it: cleared here, restored after the check.
  const exitCodeBefore = process.exitCode;
  process.exitCode = undefined;
  const crashes: boolean[] = [];
  first.on(first.events.CRASH, ({ payload }) => crashes.push(payload.restart));

  // The batch of the next records waits on the lock well past the 6 s session timeout, heartbeating nothing.
  const locker = new pg.Client({ connectionString: h.databaseUrl });
  await locker.connect();
  try {
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE event_journal IN ACCESS EXCLUSIVE MODE');
    await produce(30, 9);
    await new Promise((r) => setTimeout(r, 15_000));
    await locker.query('COMMIT');
  } finally {
    await locker.end();
  }
  await eventually(async () => crashes.length > 0, 'kafkajs to crash the consumer', 60_000);
  expect(crashes).toContain(false); // kafkajs itself will not start it again

  await produce(39, 21);
  await eventually(async () => (await h.journalCount()) === 60, 'all 60 records journaled', 90_000, 500);
  expect(h.ingest!.consumer()).not.toBe(first);
  expect(await restarts('crashed')).toBeGreaterThanOrEqual(1);
  await new Promise((r) => setTimeout(r, 2000)); // a redelivery, if any, would land now
  const { rows } = await h.pool.query<{ at: string; payload: Record<string, unknown> }>(
    `SELECT topic || '/' || kafka_partition || '/' || kafka_offset AS at, payload FROM event_journal ORDER BY id`,
  );
  const key = (c: Coordinates) => `${c.topic}/${c.partition}/${c.offset}`;
  expect(rows.map((r) => r.at).sort()).toEqual(sent.map((s) => key(s.at)).sort());
  const byAt = new Map(rows.map((r) => [r.at, r.payload]));
  for (const s of sent) expect(byAt.get(key(s.at))).toEqual(s.payload);
  expect(await h.dlqCount()).toBe(0);
  const exitCodeAfter = process.exitCode;
  process.exitCode = exitCodeBefore;
  expect(exitCodeAfter ?? 0).toBe(0);
});

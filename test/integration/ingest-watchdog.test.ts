import pg from 'pg';
import type { LagMonitor } from '../../ingest/lag-monitor';
import type { ConsumerRestartReason } from '../../journal/kinds';
import { produceSeqLeads, type Coordinates, type SentRecord } from '../support/coordinates';
import { createSinkHarness, eventually, hangConsumer, startHarnessLagMonitor, type SinkHarness } from '../support/sink';

/**
 * The ingest watchdog on the real single-broker stack. The cluster fault suite saw kafkajs stop consuming without an
 * error (OffsetFetch retried against a coordinator that stayed "loading"); here the running consumer is made to stop
 * fetching the same silent way — its partitions paused behind the service's back — and the watchdog, acting on the
 * lag monitor's stalls, has to bring ingestion back, with every record journaled exactly once.
 */
const WATCHDOG_SECONDS = 4;
let h: SinkHarness;
let monitor: LagMonitor;

beforeAll(async () => {
  h = await createSinkHarness('watchdog', {
    INGEST_STALL_SECONDS: '2',
    INGEST_WATCHDOG_SECONDS: String(WATCHDOG_SECONDS),
    INGEST_LAG_INTERVAL_MS: '250',
  });
  monitor = startHarnessLagMonitor(h);
  await h.startIngest({ lagMonitor: monitor });
}, 60_000);
afterAll(async () => {
  await monitor?.stop();
  await h?.close();
});

const sent: SentRecord[] = [];

/** Leads with payload.seq in [from, from + count), spread over the three partitions; remembered with their coordinates. */
async function produce(from: number, count: number): Promise<void> {
  sent.push(...(await produceSeqLeads(h.upstream, h.topics.leads, from, count, (seq) => ({ name: `Lead ${seq}` }))));
}

/** Every record sent so far sits in the journal exactly once, at its coordinates, with its content; nothing else. */
async function expectJournaledExactlyOnce(): Promise<void> {
  const { rows } = await h.pool.query<{ topic: string; p: number; o: string; payload: Record<string, unknown> }>(
    'SELECT topic, kafka_partition AS p, kafka_offset::text AS o, payload FROM event_journal',
  );
  const at = new Map<string, Record<string, unknown>[]>();
  for (const r of rows) {
    const key = `${r.topic}/${r.p}/${r.o}`;
    at.set(key, [...(at.get(key) ?? []), r.payload]);
  }
  const key = (c: Coordinates) => `${c.topic}/${c.partition}/${c.offset}`;
  expect(sent.map((s) => ({ at: key(s.at), rows: at.get(key(s.at)) }))).toEqual(
    sent.map((s) => ({ at: key(s.at), rows: [s.payload] })),
  );
  expect(rows).toHaveLength(sent.length);
  expect(await h.dlqCount()).toBe(0);
}

/** Invariant 1 in the metrics: per partition, consumed = journaled + dead-lettered + redelivered. */
async function accounting() {
  const consumed = (await h.metrics.consumed.get()).values;
  const outcomes = (await h.metrics.recordOutcomes.get()).values;
  return consumed.map(({ labels, value }) => ({
    partition: `${labels.topic}/${labels.partition}`,
    consumed: value,
    outcomes: outcomes
      .filter((o) => o.labels.topic === labels.topic && o.labels.partition === labels.partition)
      .reduce((sum, o) => sum + o.value, 0),
  }));
}

const restarts = async (reason: ConsumerRestartReason) =>
  (await h.metrics.consumerRestarts.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;

it('restarts a consumer that silently stopped fetching; every record is journaled exactly once', async () => {
  await produce(0, 30);
  await eventually(async () => (await h.journalCount()) === 30, 'the first 30 records journaled', 60_000);
  await eventually(async () => h.ingest!.assignment().length === 6, 'all six partitions assigned');

  const hung = hangConsumer(h.ingest!);
  await produce(30, 60);
  // The lag monitor sees it (the consumer itself says nothing) ...
  const stalled = await eventually(async () => {
    const leads = monitor.stalled().filter((s) => s.topic === h.topics.leads);
    return leads.length === 3 ? leads : undefined;
  }, 'the three lead partitions reported stalled');
  expect(stalled.map((s) => s.partition).sort()).toEqual([0, 1, 2]);
  expect(h.ingest!.isPaused()).toBe(false);

  // ... and the watchdog restarts the consumer, which resumes at the committed offsets.
  await eventually(async () => (await h.journalCount()) === 90, 'the 60 records sent while it hung', 90_000, 500);
  expect(h.ingest!.consumer()).not.toBe(hung);
  expect(await restarts('stalled')).toBeGreaterThanOrEqual(1);
  await eventually(async () => monitor.stalled().length === 0, 'no partition stalled any more', 30_000);
  await new Promise((r) => setTimeout(r, 2000)); // a redelivery, if any, would land now
  await expectJournaledExactlyOnce();
  for (const p of await accounting()) expect(p.outcomes).toBe(p.consumed);
});

it('does not restart a consumer paused for a Postgres outage; everything is journaled once Postgres is back', async () => {
  const restartsBefore = (await restarts('stalled')) + (await restarts('unassigned'));
  const crashesBefore = await restarts('crashed');
  const consumerBefore = h.ingest!.consumer();
  // The same consumer throughout, and why not if not: a crash restart (kafkajs gave up on it) is not the watchdog's.
  const sameConsumer = async () => ({
    same: h.ingest!.consumer() === consumerBefore,
    crashRestarts: (await restarts('crashed')) - crashesBefore,
  });
  // An outage of this test's database only: no new connections, the existing ones dropped (shared Postgres stays up).
  const database = new URL(h.databaseUrl).pathname.slice(1);
  const admin = new pg.Client({ connectionString: h.databaseUrl });
  await admin.connect();
  try {
    await admin.query(`ALTER DATABASE ${database} CONNECTION LIMIT 0`);
    await admin.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE datname = current_database() AND usename = current_user AND pid <> pg_backend_pid()`,
    );
    await produce(90, 30);
    await eventually(async () => h.ingest!.isPaused(), 'ingestion to pause', 30_000);
    // Stalled long enough that the watchdog would restart were the pause not deliberate, and two of its checks more.
    await eventually(
      async () => monitor.stalled().some((s) => Date.now() - s.since.getTime() >= (WATCHDOG_SECONDS + 2) * 1000),
      'a stall past INGEST_WATCHDOG_SECONDS',
      60_000,
    );
    expect(h.ingest!.isPaused()).toBe(true);
    expect((await restarts('stalled')) + (await restarts('unassigned'))).toBe(restartsBefore);
    expect(await sameConsumer()).toEqual({ same: true, crashRestarts: 0 });
  } finally {
    await admin.query(`ALTER DATABASE ${database} CONNECTION LIMIT -1`);
    await admin.end();
  }
  await eventually(async () => (await h.journalCount()) === 120, 'the 30 records sent during the outage', 60_000, 500);
  expect(h.ingest!.isPaused()).toBe(false);
  expect(await sameConsumer()).toEqual({ same: true, crashRestarts: 0 });
  await new Promise((r) => setTimeout(r, 2000));
  await expectJournaledExactlyOnce();
  for (const p of await accounting()) expect(p.outcomes).toBe(p.consumed);
});

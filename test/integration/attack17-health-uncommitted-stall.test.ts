import type { LagMonitor } from '../../ingest/lag-monitor';
import { produceSeqLeads, type SentRecord } from '../support/coordinates';
import { createSinkHarness, eventually, hangConsumer, startHarnessLagMonitor, type SinkHarness } from '../support/sink';

/**
 * attack17: with KAFKA_FROM_BEGINNING=false a new group's consumer starts at the end of each partition. kafkajs used to
 * resolve that end in memory and commit nothing until a batch, so:
 * - a consumer that stopped fetching before its first commit looked caught up to the lag monitor (no committed offset
 *   read as "at the high watermark", lag 0): /health stayed healthy and the watchdog never restarted it;
 * - a consumer stopped (or crashed) before its first commit started at a later end the next time, and the records sent
 *   in between were never journaled.
 * Invariant: the group's start is durable before its first fetch (ingest commits it), so both read from the same place.
 */
let h: SinkHarness;
let monitor: LagMonitor;

beforeEach(async () => {
  h = await createSinkHarness('uncommitted', {
    KAFKA_FROM_BEGINNING: 'false',
    INGEST_STALL_SECONDS: '2',
    INGEST_WATCHDOG_SECONDS: '4',
    INGEST_LAG_INTERVAL_MS: '250',
  });
  monitor = startHarnessLagMonitor(h);
}, 60_000);
afterEach(async () => {
  await monitor?.stop();
  await h?.close();
});

/** The journal holds exactly the records sent, each once, at its coordinates. */
async function expectJournaledExactlyOnce(sent: SentRecord[]): Promise<void> {
  const { rows } = await h.pool.query<{ at: string; payload: unknown }>(
    `SELECT topic || '/' || kafka_partition || '/' || kafka_offset AS at, payload FROM event_journal`,
  );
  const byPlace = (a: { at: string }, b: { at: string }) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0);
  const expected = sent.map((s) => ({ at: `${s.at.topic}/${s.at.partition}/${s.at.offset}`, payload: s.payload }));
  expect(rows.sort(byPlace)).toEqual(expected.sort(byPlace));
}

const produce = (from: number, count: number) =>
  produceSeqLeads(h.upstream, h.topics.leads, from, count, (seq) => ({ name: `Lead ${seq}` }));

it('sees a consumer that stops fetching before its first commit as stalled, and the watchdog brings it back', async () => {
  const before = await produce(0, 9); // history from before the group existed: not to be journaled
  expect(before).toHaveLength(9);
  const ingest = await h.startIngest({ lagMonitor: monitor });
  await eventually(async () => ingest.assignment().length === 6, 'all six partitions assigned');
  const hung = hangConsumer(ingest);

  const sent = await produce(100, 30);
  const stalled = await eventually(async () => {
    const leads = monitor.stalled().filter((s) => s.topic === h.topics.leads);
    return leads.length === 3 ? leads : undefined;
  }, 'the three lead partitions reported stalled');
  expect(stalled.map((s) => s.lag).reduce((a, b) => a + b, 0)).toBe(30);
  await expect(monitor.check()).rejects.toThrow(/stalled for \d+ s with lag/);

  await eventually(async () => (await h.journalCount()) === 30, 'the 30 records sent while it hung', 90_000, 500);
  expect(h.ingest!.consumer()).not.toBe(hung);
  await eventually(async () => monitor.stalled().length === 0, 'no partition stalled any more', 30_000);
  await new Promise((r) => setTimeout(r, 1500)); // a redelivery, if any, would land now
  await expectJournaledExactlyOnce(sent);
  await expect(monitor.check()).resolves.toBeUndefined();
});

it('journals what was sent while ingest was down before its first commit, and nothing from before its start', async () => {
  await produce(0, 9);
  await h.startIngest();
  await eventually(async () => h.ingest!.assignment().length === 6, 'all six partitions assigned');
  await h.stopIngest();

  const sent = await produce(100, 30);
  await h.startIngest();
  await eventually(async () => (await h.journalCount()) >= 30, 'the 30 records sent while it was down', 60_000, 500);
  sent.push(...(await produce(200, 6)));
  await eventually(async () => (await h.journalCount()) >= 36, 'the 6 records sent after', 60_000, 500);
  await new Promise((r) => setTimeout(r, 1500));
  await expectJournaledExactlyOnce(sent);
});

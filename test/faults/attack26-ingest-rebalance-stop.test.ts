import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { exited, spawnCli, terminate, untilPrinted } from '../support/ingest-process';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';
import { steadyTraffic } from '../support/traffic';

/**
 * attack26 (I1, I2): mid-rebalance. A peer `ingest` runs throughout; another one is started again and again and
 * stopped by SIGTERM at varying points of its group join (the rebalance it causes), under steady traffic.
 *
 * Invariants: each stop exits 0 within SHUTDOWN_TIMEOUT; after the last restart every produced record is journaled
 * exactly once (topic/partition/offset), none in the DLQ.
 *
 * Observed live (SHUTDOWN_TIMEOUT=5s, 6 rounds, SIGTERM 0.3..3.8 s after 'Metrics listening'): every stop exits 0, but
 * five of six take the whole budget (4.76 s: "The Kafka consumer did not disconnect within 1666 ms; abandoned it",
 * the consumer left in the group). The fresh ingest started afterwards (peer stopped too) then journals nothing new
 * for 92 s, until the test ends: its SyncGroup times out every 30 s ("Request SyncGroup(key: 14, version: 3) timed
 * out", "Response without match", "Closed connection", "Restarting the consumer in 300ms"), and the lag monitor
 * reports every partition stalled for 60 s. Result: produced 42,400, journaled 10,067 (all distinct, DLQ 0): nothing
 * doubled, but the records are not journaled after the restart within 90 s, far past the 30 s session in which
 * the abandoned members should have expired (docs: "its partitions wait for its session to expire"). Root cause not
 * isolated (abandoned mid-join members vs kafkajs's rejoin loop against the Kafka 4.4 coordinator); a second run
 * with 10x the traffic showed the same (1,992,000 produced, 127,534 journaled).
 *
 * Cause and fix (patches/kafkajs+2.2.4.patch; test/unit/kafkajs-connection.test.ts): a member that died mid-join can
 * be the generation's leader; the coordinator then holds the others' SyncGroup up to the rebalance timeout, and
 * kafkajs gave up after its request timeout and restarted the consumer under a new member id; the old connection's
 * late `end` then rejected the new member's JoinGroup, which the coordinator kept as a member nobody runs, the next
 * leader that never syncs. SyncGroup now waits as long as the coordinator may hold it and a replaced socket's events
 * are ignored: the fresh ingest keeps one member id and is never restarted.
 */
jest.setTimeout(300_000);

const SHUTDOWN_TIMEOUT_MS = Number(process.env.A26_SHUTDOWN_TIMEOUT_MS ?? 5_000);
const ROUNDS = 6;
const PER_SEND = 200;
let h: SinkHarness;

beforeAll(async () => {
  h = await createSinkHarness('a26ingrebal');
}, 60_000);
afterAll(async () => {
  await h?.close();
});

function startIngest(): ChildProcess {
  return spawnCli('ingest', {
    DATABASE_URL: h.config.databaseUrl,
    KAFKA_TOPICS: h.config.kafka.topics.join(','),
    KAFKA_GROUP_ID: h.config.kafka.groupId,
    SHUTDOWN_TIMEOUT: `${SHUTDOWN_TIMEOUT_MS}ms`,
    LOG_LEVEL: 'info',
  });
}

it(`SIGTERM mid-join ${ROUNDS} times (peer running) at SHUTDOWN_TIMEOUT=${SHUTDOWN_TIMEOUT_MS}ms: exit 0 in time, every record once`, async () => {
  const traffic = steadyTraffic(h, PER_SEND, 200, (i, j) => ({ tenant_id: 'acme', i, j }));
  const stops: { code: unknown; ms: number }[] = [];
  const peer = startIngest();
  await untilPrinted(peer, 'Joined consumer group');
  for (let round = 0; round < ROUNDS; round++) {
    const ingest = startIngest();
    await untilPrinted(ingest, 'Metrics listening');
    await new Promise((r) => setTimeout(r, 300 + round * 700));
    const { exit: code, stopMs: ms } = await terminate(ingest, SHUTDOWN_TIMEOUT_MS + 15_000);
    stops.push({ code, ms });
    ingest.kill('SIGKILL');
  }
  const produced = await traffic.stop();
  peer.kill('SIGTERM');
  const peerCode = await exited(peer);
  stops.push({ code: peerCode, ms: 0 });
  const last = startIngest();
  let lastOut = '';
  last.stdout?.on('data', (c: Buffer) => (lastOut += c.toString()));
  try {
    console.log(JSON.stringify({ stops, produced }));
    await eventually(async () => (await h.journalCount()) >= produced, 'everything journaled', 90_000).catch(
      (err: Error) => console.log(err.message),
    );
    await new Promise((r) => setTimeout(r, 2000));
  } finally {
    last.kill('SIGTERM');
    await exited(last);
    if (process.env.A26_DUMP) fs.writeFileSync(process.env.A26_DUMP, lastOut);
  }
  const { rows } = await h.pool.query<{ total: string; distinct_offsets: string }>(
    `SELECT count(*) AS total, count(DISTINCT (topic, kafka_partition, kafka_offset)) AS distinct_offsets
       FROM event_journal`,
  );
  const summary = {
    produced,
    journaled: Number(rows[0].total),
    distinct: Number(rows[0].distinct_offsets),
    dlq: await h.dlqCount(),
  };
  console.log(JSON.stringify({ stops, ...summary }));
  expect(stops.map((s) => ({ code: s.code, inTime: s.ms < SHUTDOWN_TIMEOUT_MS }))).toEqual(
    stops.map(() => ({ code: 0, inTime: true })),
  );
  expect(summary).toEqual({ produced, journaled: produced, distinct: produced, dlq: 0 });
  const lines = lastOut
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as { msg?: string; member_id?: string });
  const memberIds = new Set(lines.filter((l) => l.msg === 'Joined consumer group').map((l) => l.member_id));
  expect({
    memberIds: memberIds.size,
    restarts: lines.filter((l) => l.msg?.startsWith('Restarting the consumer')),
  }).toEqual({
    memberIds: 1,
    restarts: [],
  });
});

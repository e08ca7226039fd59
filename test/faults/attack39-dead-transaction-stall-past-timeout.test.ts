import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { BROKER_TRANSACTION_ABORT_CHECK_MS, createKafka, REPLAY_TRANSACTION_TIMEOUT_MS } from '../../shared/kafka';
import { createLogger } from '../../shared/logger';
import { baseConfig, uniqueSuffix } from '../support/env';

/**
 * attack39 against f80d5e0 (replay sends as Kafka transactions).
 *
 * Invariant 3 (docs/operations.md "Settings that matter", replay transaction timeout): "a worker killed mid-send leaves
 * its transaction open: read-committed consumers of that partition (ingest, and any downstream consumer with
 * isolation.level=read_committed) stop at it until the broker aborts it, at most this long [60 s]"; docs/lifecycle.md
 * likewise bounds it by REPLAY_TRANSACTION_TIMEOUT_MS.
 *
 * Attack: a worker process (child on dist/: the real createProducer) sends two replay sends, 5 s apart, to partitions
 * 0 and 1 of a topic; each is acknowledged, then its EndTxn(commit) request is never written (the child stops writing
 * it: the worker is "killed mid-send", after its produce and before its commit) and the child is SIGKILLed. A plain
 * record is then produced to each partition; a read_committed consumer measures how long after each transaction's
 * produce was acknowledged the partition's next record became visible.
 *
 * Observed (run 04:11 UTC, 76 s): partition 0 stalled 60179 ms, partition 1 65116 ms after its transaction's produce was
 * acknowledged (the test allows 62000): the broker aborts a timed-out transaction
 * only at its periodic check (transaction.abort.timed.out.transaction.cleanup.interval.ms, 10 s by default, not
 * set by scripts/stack.sh nor named in the docs), so a dead worker's transaction stalls read_committed consumers for
 * up to ~70 s; two transactions started 5 s apart cannot both be aborted within 60 s + 2 s of their start.
 *
 * Suspected cause: docs/operations.md:262 and docs/lifecycle.md:303 ("at most this long") against shared/kafka.ts
 * REPLAY_TRANSACTION_TIMEOUT_MS = 60_000 (~line 281): the bound left out the broker's abort-check interval.
 *
 * Fixed (the bound, in the docs): the stall is bounded by REPLAY_TRANSACTION_TIMEOUT_MS plus the broker's check
 * interval (BROKER_TRANSACTION_ABORT_CHECK_MS, 10 s, now set by name in both stack profiles); docs/operations.md and
 * docs/lifecycle.md say up to 70 s. This test holds the stall to that bound (plus 2 s).
 */
jest.setTimeout(180_000);

const DIST = path.resolve(__dirname, '../../dist');
const config = baseConfig();
const kafka = createKafka(config.kafka.brokers, 'a39-stall-reader', createLogger('silent'));
let child: ChildProcess | undefined;

afterAll(() => {
  child?.kill('SIGKILL');
});

const WORKER = `
const net = require('node:net');
const { createInterface } = require('node:readline');
const { createKafka, createProducer } = require(${JSON.stringify(`${DIST}/shared/kafka`)});
const { createLogger } = require(${JSON.stringify(`${DIST}/shared/logger`)});
const [broker, topic] = process.argv.slice(1);
const log = createLogger('silent');
const producer = createProducer(createKafka([broker], 'a39-stall-worker', log), log);
// Once armed, EndTxn requests (API key 26) are never written: the process dies between its produce and its commit.
const write = net.Socket.prototype.write;
let armed = false;
net.Socket.prototype.write = function (chunk, ...rest) {
  if (armed && Buffer.isBuffer(chunk) && chunk.length >= 6 && chunk.readInt16BE(4) === 26) {
    console.log('produced ' + Date.now());
    return true;
  }
  return write.call(this, chunk, ...rest);
};
(async () => {
  await producer.connect();
  await producer.send({ topic, messages: [{ partition: 0, value: 'warm' }, { partition: 1, value: 'warm' }] });
  console.log('ready');
  createInterface({ input: process.stdin }).on('line', (line) => {
    armed = true;
    void producer.send({ topic, messages: [{ partition: Number(line), value: 'dead-' + line }] }).catch(() => undefined);
  });
})().catch((err) => { console.log('error ' + err.message); process.exit(1); });
`;

it("a killed worker's open transaction stalls read_committed consumers for at most the transaction timeout", async () => {
  const topic = `a39-stall-${uniqueSuffix()}`;
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true });
  await admin.disconnect();

  child = spawn(process.execPath, ['-e', WORKER, config.kafka.brokers[0], topic], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const printed: string[] = [];
  createInterface({ input: child.stdout! }).on('line', (line) => printed.push(line));
  const waitFor = async (n: number, prefix: string) => {
    for (let i = 0; i < 600 && printed.filter((l) => l.startsWith(prefix)).length < n; i++)
      await new Promise((r) => setTimeout(r, 50));
    expect(printed.filter((l) => l.startsWith(prefix) || l.startsWith('error'))).toHaveLength(n);
  };
  await waitFor(1, 'ready');
  child.stdin!.write('0\n');
  await waitFor(1, 'produced');
  await new Promise((r) => setTimeout(r, 5000));
  child.stdin!.write('1\n');
  await waitFor(2, 'produced');
  child.kill('SIGKILL');
  const producedAt = printed.filter((l) => l.startsWith('produced')).map((l) => Number(l.split(' ')[1]));

  // The next record of each partition, and when a read_committed consumer sees it.
  const plain = kafka.producer();
  await plain.connect();
  await plain.send({
    topic,
    messages: [
      { partition: 0, value: 'next-0' },
      { partition: 1, value: 'next-1' },
    ],
  });
  await plain.disconnect();
  const seenAt: Record<number, number> = {};
  const consumer = kafka.consumer({ groupId: `${topic}-read` });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      if (message.value?.toString().startsWith('next-')) seenAt[partition] ??= Date.now();
    },
  });
  for (let i = 0; i < 1200 && Object.keys(seenAt).length < 2; i++) await new Promise((r) => setTimeout(r, 100));
  await consumer.disconnect();
  const stalls = [0, 1].map((p) => (seenAt[p] ?? Date.now()) - producedAt[p]);
  console.log(JSON.stringify({ printed, stallsMs: stalls, seen: Object.keys(seenAt) }));
  // Each partition stalled at most the transaction timeout (2 s of slack for the consumer's fetch and this test).
  expect(stalls.map((ms) => ms <= REPLAY_TRANSACTION_TIMEOUT_MS + BROKER_TRANSACTION_ABORT_CHECK_MS + 2000)).toEqual([
    true,
    true,
  ]);
});

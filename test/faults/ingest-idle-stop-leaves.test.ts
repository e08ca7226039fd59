import type { ChildProcess } from 'node:child_process';
import { exited, spawnCli, untilPrinted } from '../support/ingest-process';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';

/**
 * A healthy ingest's stop leaves its consumer group, so its peer takes its partitions at once, not after the stopped
 * member's session expires (KAFKA_SESSION_TIMEOUT_MS). The stop gives the consumer's disconnect only a share of
 * SHUTDOWN_TIMEOUT (3.3 s at 10 s, 1.7 s at 5 s), and kafkajs's disconnect waits for the fetch in flight, which an
 * idle partition's broker holds for the consumer's max wait (kafkajs's default: 5 s): every idle stop at those
 * timeouts abandoned its consumer ("did not disconnect ... abandoned it", seen after attack26's run) and the peer's
 * new records waited 30 s. Ingest's fetches now wait at most 0.5 s.
 */
jest.setTimeout(180_000);

const SESSION_TIMEOUT_MS = 45_000;
let h: SinkHarness;
const children: ChildProcess[] = [];

beforeAll(async () => {
  h = await createSinkHarness('idlestop', { KAFKA_SESSION_TIMEOUT_MS: String(SESSION_TIMEOUT_MS) });
}, 60_000);
afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await Promise.all(children.map(exited));
  await h?.close();
});

function startIngest(shutdownTimeout: string): ChildProcess {
  const child = spawnCli('ingest', {
    DATABASE_URL: h.config.databaseUrl,
    KAFKA_TOPICS: h.config.kafka.topics.join(','),
    KAFKA_GROUP_ID: h.config.kafka.groupId,
    KAFKA_SESSION_TIMEOUT_MS: String(SESSION_TIMEOUT_MS),
    SHUTDOWN_TIMEOUT: shutdownTimeout,
    LOG_LEVEL: 'info',
  });
  children.push(child);
  return child;
}

function output(child: ChildProcess): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    child.stdout?.on('data', (chunk: Buffer) => (text += chunk.toString()));
    child.once('close', () => resolve(text)); // 'close': stdout read to its end
  });
}

it.each(['5s', '10s'])(
  'an idle ingest stopped at SHUTDOWN_TIMEOUT=%s leaves its group: the peer journals new records long before a session',
  async (shutdownTimeout) => {
    const peer = startIngest('30s');
    await untilPrinted(peer, 'Joined consumer group');
    const stopped = startIngest(shutdownTimeout);
    const said = output(stopped);
    await untilPrinted(stopped, 'Joined consumer group');
    // Both members own partitions of both topics once the group settled; then everything is idle.
    const before = await h.journalCount();
    await h.send(h.topics.leads, [{ tenant_id: 'acme', warmup: 1 }]);
    await eventually(async () => (await h.journalCount()) > before, 'warm-up journaled', 60_000);
    await new Promise((r) => setTimeout(r, 2_000));

    stopped.kill('SIGTERM');
    expect(await exited(stopped)).toBe(0);
    // Left, not abandoned: no "The Kafka consumer did not disconnect within … ms; abandoned it".
    expect((await said).includes('abandoned it')).toBe(false);

    // Records for every partition: the peer journals them all after one rebalance, far before a session.
    const count = await h.journalCount();
    const sent = Date.now();
    for (let partition = 0; partition < 3; partition++) {
      await h.send(h.topics.leads, [{ tenant_id: 'acme', partition }], { partition });
      await h.send(h.topics.jobs, [{ tenant_id: 'acme', partition }], { partition });
    }
    await eventually(async () => (await h.journalCount()) >= count + 6, 'journaled by the peer', SESSION_TIMEOUT_MS);
    expect(Date.now() - sent).toBeLessThan(SESSION_TIMEOUT_MS / 3);

    peer.kill('SIGTERM');
    expect(await exited(peer)).toBe(0);
  },
);

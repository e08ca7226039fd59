import pg from 'pg';
import type { Consumer, Kafka } from 'kafkajs';
import { startIngest, type IngestService } from '../../ingest/consumer';
import { produceSeqLeads } from '../support/coordinates';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';

/**
 * Adversarial review 15, ingest consumer restart (commit d9c5754).
 *
 * Invariant: a shutdown during a consumer restart completes, and once IngestService.stop() has resolved no consumer
 * of the process is alive: none is a member of the group, none journals (docs/integrity.md §4 and §5, "Shutdown": intake stops
 * first; never two live consumers in one process).
 *
 * Attack: kafkajs crashes the consumer for good (UNKNOWN_MEMBER_ID on a commit, produced as in
 * ingest-consumer-crash.test.ts: a lock on the journal holds a batch past the 6 s session timeout). The crash
 * listener starts a fresh consumer a second later; while that fresh consumer is joining the group (inside
 * consumer.run), the process shuts down. stop() disconnects it and resolves — but kafkajs's disconnect does not stop a
 * runner that is still joining: the join fails on the closed connections, kafkajs's crash handler sees a retriable
 * error and schedules its own restart after the disconnect already ran (consumer/index.js onCrash sets restartTimeout
 * after `await disconnect()`), and the consumer reconnects, joins the group and journals records after ingest was
 * stopped. The same hole lets a watchdog restart that retires a consumer in the middle of a join leave two live
 * consumers in one process.
 *
 * The real consumer on the real broker and database; the test only wraps kafka.consumer() to see each consumer the
 * service creates, and calls stop() when the fresh one sends its first group request.
 */
let h: SinkHarness;
let service: IngestService | undefined;
const consumers: Consumer[] = [];

beforeAll(async () => {
  h = await createSinkHarness('a15-stop-restart', {
    KAFKA_SESSION_TIMEOUT_MS: '6000',
    DATABASE_STATEMENT_TIMEOUT: '60s',
  });
}, 60_000);
afterAll(async () => {
  await Promise.all(consumers.map((c) => c.disconnect().catch(() => undefined)));
  await h?.close();
});

it('leaves no live consumer once stop() resolved, when the shutdown comes while a crashed consumer is replaced', async () => {
  let stopped: Promise<void> | undefined;
  const kafka = Object.create(h.kafka) as Kafka;
  kafka.consumer = (config) => {
    const consumer = h.kafka.consumer(config);
    if (consumers.push(consumer) > 1) {
      // The fresh consumer: the shutdown comes as it looks for its group coordinator, inside consumer.run.
      consumer.on(consumer.events.REQUEST, ({ payload }) => {
        if (stopped || !['GroupCoordinator', 'JoinGroup'].includes(payload.apiName)) return;
        stopped = service!.stop();
      });
    }
    return consumer;
  };
  service = await startIngest({ kafka, pool: h.pool, metrics: h.metrics, log: h.log, config: h.config });

  await produceSeqLeads(h.upstream, h.topics.leads, 0, 10);
  await eventually(async () => (await h.journalCount()) === 10, 'the first 10 records journaled', 60_000);
  const crashes: boolean[] = [];
  consumers[0].on(consumers[0].events.CRASH, ({ payload }) => crashes.push(payload.restart));
  const locker = new pg.Client({ connectionString: h.databaseUrl });
  await locker.connect();
  try {
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE event_journal IN ACCESS EXCLUSIVE MODE');
    await produceSeqLeads(h.upstream, h.topics.leads, 10, 5);
    await new Promise((r) => setTimeout(r, 15_000));
    await locker.query('COMMIT');
  } finally {
    await locker.end();
  }
  await eventually(async () => crashes.includes(false), 'kafkajs to crash the consumer for good', 60_000);
  await eventually(async () => stopped !== undefined, 'the shutdown during the fresh consumer’s start', 60_000);
  await stopped;

  // Ingest is stopped: a record sent now must stay unconsumed, and the group must hold no member of this process.
  const journaled = await h.journalCount();
  await produceSeqLeads(h.upstream, h.topics.leads, 15, 5);
  await new Promise((r) => setTimeout(r, 12_000)); // an observation window: a live consumer would join and journal
  const admin = h.kafka.admin();
  await admin.connect();
  try {
    const { groups } = await admin.describeGroups([h.config.kafka.groupId]);
    const members = groups.flatMap((group) => group.members.map((member) => member.memberId));
    expect({ members, journaled: await h.journalCount() }).toEqual({ members: [], journaled });
  } finally {
    await admin.disconnect();
  }
}, 180_000);

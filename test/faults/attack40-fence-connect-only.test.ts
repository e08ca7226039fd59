import { readToEnd } from '../../bench/support/topic-end';
import { createKafka, createProducer } from '../../shared/kafka';
import { createLogger } from '../../shared/logger';
import { baseConfig, uniqueSuffix } from '../support/env';

/**
 * attack40 (helper-82, code review of b055ee3; confirmed against the broker before the fix).
 *
 * Invariant (docs/lifecycle.md, "Erasure barrier"; shared/kafka.ts fenceScopeOf): once a replay producer's scope is
 * fenced, a transaction its ids opened before is aborted: its commit fails and a read_committed consumer never sees it.
 *
 * Attack: a kafkajs producer on `${scope}:0` opens a transaction and sends B; fenceOthers(scope) runs; then it commits.
 *
 * Observed before: the fence only connected fresh producers, and kafkajs's connect() does not run InitProducerId with
 * the transactional id (its first transaction() does), so nothing was fenced: the commit succeeded and B was read.
 * Fixed: connectTransactional takes the id's epoch (an empty transaction begun and aborted) for every fence and slot.
 */
jest.setTimeout(60_000);

it('a transaction opened before fenceOthers(scope) can no longer commit, and is never read committed', async () => {
  const config = baseConfig();
  const log = createLogger('silent');
  const kafka = createKafka(config.kafka.brokers, 'a40-fence', log);
  const topic = `test.a40fence.${uniqueSuffix()}`;
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
  await admin.disconnect();
  const scope = `a40-scope-${uniqueSuffix()}`;
  const old = kafka.producer({ transactionalId: `${scope}:0`, idempotent: true, maxInFlightRequests: 1 });
  await old.connect();
  const fencer = createProducer(kafka, log);
  try {
    const transaction = await old.transaction();
    await transaction.send({ topic, messages: [{ value: 'B' }] });
    await fencer.fenceOthers(scope);
    const commit = await transaction.commit().then(
      () => 'committed',
      (err: { type?: string; message: string }) => err.type ?? err.message,
    );
    const seen: string[] = [];
    await readToEnd(kafka, topic, (_p, m) => seen.push(m.value?.toString() ?? ''));
    expect({ commit, seen }).toEqual({ commit: expect.stringMatching(/EPOCH|FENCED/), seen: [] });
  } finally {
    await old.disconnect();
  }
});

import { createErasureActivities } from '../../activities/erasure';
import { appendBatch } from '../../journal/append';
import { parseRecord, type ParsedRecord } from '../../journal/record';
import { subjectHash, type ErasureTarget } from '../../lifecycle/erasure-target';
import { storeErasureSubject } from '../../repository/erasure';
import { ensureServiceKey } from '../../repository/service-keys';
import { createSinkHarness, type SinkHarness } from '../support/sink';
import { activityDeps, inActivity } from '../support/temporal';

/**
 * Invariants 1 and 3 (docs/lifecycle.md, "Redeliveries of removed records"; "Erasure"): every row removed whose
 * record Kafka may still deliver is remembered, so that a redelivery is not journaled again and an erased value does
 * not come back. removed_records only remembers rows with a content hash (repository/removed-records.ts): a journal
 * row written before migration 007 (content_hash NULL, coordinates kept) is recognised as long as it is stored
 * (journal/redelivery.ts compares the payload), but once an erasure deletes it nothing is left to compare with. Its
 * redelivery within the horizon — an installation that upgraded from before 007 less than KAFKA_REDELIVERY_HORIZON
 * ago, or any time with "forever" — is journaled again, with the erased subject's value.
 */
let h: SinkHarness;
beforeAll(async () => {
  h = await createSinkHarness('attack5-legacy-erased');
});
afterAll(() => h?.close());

const email = 'legacy-subject@example.com';
const value = JSON.stringify({ tenant_id: 'acme', email, name: 'Ann' });

const delivered = (topic: string): ParsedRecord =>
  parseRecord(
    { topic, partition: 0, offset: '5', key: null, value: Buffer.from(value), timestamp: '1764547199000' },
    { maxBytes: 1024 * 1024, lineageKey: h.lineageKey },
  );

async function erase(target: ErasureTarget, erasureId: string) {
  const hash = subjectHash(await ensureServiceKey(h.pool, 'erasure'), target);
  await storeErasureSubject(h.pool, hash, target);
  const activities = createErasureActivities(activityDeps(h));
  for (const table of ['event_journal', 'event_dlq'] as const) {
    await inActivity(() => activities.eraseRows({ erasureId, subjectHash: hash, table, afterId: 0, windowIds: 1000 }));
  }
}

it('a pre-007 journal row erased within the horizon is not journaled again when Kafka delivers its record again', async () => {
  const topic = h.topics.leads;
  // A row as schemas 001-006 wrote it (no content hash), received today: well within the default 15-day horizon.
  await h.pool.query(
    `INSERT INTO event_journal (tenant_id, topic, payload, kafka_partition, kafka_offset) VALUES ('acme', $1, $2, 0, 5)`,
    [topic, value],
  );
  // While the row is stored, a redelivery of its record is recognised.
  expect((await appendBatch(h.pool, [delivered(topic)])).outcomes).toEqual(['redelivered']);

  await erase({ kind: 'subject', field: 'email', value: email }, 'attack5-legacy-erasure');
  const holding = `SELECT count(*)::int AS n FROM event_journal WHERE payload->>'email' = $1`;
  expect((await h.pool.query<{ n: number }>(holding, [email])).rows[0].n).toBe(0);

  // Kafka delivers the record again (a rebalance, a consumer group reset): the erased value must not come back.
  const again = await appendBatch(h.pool, [delivered(topic)]);
  expect((await h.pool.query<{ n: number }>(holding, [email])).rows[0].n).toBe(0); // fails: 1, the value is back
  expect(again.outcomes).toEqual(['redelivered']);
});

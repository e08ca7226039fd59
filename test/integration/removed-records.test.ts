import fc from 'fast-check';
import { listSegments } from '../../archive';
import { createErasureActivities } from '../../activities/erasure';
import { createMaintenanceActivities } from '../../activities/maintenance';
import { appendBatch } from '../../journal/append';
import { parseRecord, type ParsedRecord } from '../../journal/record';
import { subjectHash, type ErasureTarget } from '../../lifecycle/erasure-target';
import { storeErasureSubject } from '../../repository/erasure';
import { putRetentionRows } from '../../repository/retention';
import { ensureServiceKey } from '../../repository/service-keys';
import { createSinkHarness, type SinkHarness } from '../support/sink';
import { activityDeps, inActivity } from '../support/temporal';

/**
 * Invariant 1 over the journal's lifecycle (docs/lifecycle.md, "Redeliveries of removed records"): a consumed record
 * is stored once, even after retention or an erasure removed its row. Kafka keeps records for its own retention and
 * ingest is at least once (a rebalance, a group reset), so a removed record may be delivered again: within the
 * redelivery horizon it is known by its coordinates and keyed hash (removed_records) and neither journaled nor
 * dead-lettered again, while another record at the same coordinates (a re-created topic) is journaled.
 */
let h: SinkHarness;
beforeAll(async () => {
  h = await createSinkHarness('removed-records');
});
afterAll(() => h?.close());

let nextOffset = 0;
function record(topic: string, payload: unknown, offset = nextOffset++, partition = 0): ParsedRecord {
  return parseRecord(
    {
      topic,
      partition,
      offset: String(offset),
      key: null,
      value: Buffer.from(JSON.stringify(payload)),
      timestamp: '1764547199000',
    },
    { maxBytes: 1024 * 1024, lineageKey: h.lineageKey },
  );
}

const count = async (sql: string, values: unknown[]) =>
  (await h.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${sql}`, values)).rows[0].n;

/** Runs an erasure's journal and DLQ passes with the real activities, horizon as configured unless given. */
async function erase(
  target: ErasureTarget,
  erasureId: string,
  horizonMs: number | null = h.config.journal.redeliveryHorizonMs,
) {
  const hash = subjectHash(await ensureServiceKey(h.pool, 'erasure'), target);
  await storeErasureSubject(h.pool, hash, target);
  const deps = activityDeps(h);
  const activities = createErasureActivities({
    ...deps,
    config: { ...deps.config, journal: { ...deps.config.journal, redeliveryHorizonMs: horizonMs } },
  });
  for (const table of ['event_journal', 'event_dlq'] as const) {
    await inActivity(() => activities.eraseRows({ erasureId, subjectHash: hash, table, afterId: 0, windowIds: 1000 }));
  }
}

it('a record redelivered after its subject was erased is neither journaled nor dead-lettered again', async () => {
  const topic = h.topics.leads;
  const email = 'erased-subject@example.com';
  const delivery = () => [
    record(topic, { tenant_id: 'acme', email, name: 'Ann' }, 41),
    record(topic, { email, name: 'no tenant' }, 42),
  ];
  expect((await appendBatch(h.pool, delivery())).outcomes).toEqual(['journaled', 'dead_lettered']);
  await erase({ kind: 'subject', field: 'email', value: email }, 'erasure-redelivery');
  expect(await count('removed_records WHERE topic = $1', [topic])).toBe(2);

  const again = await appendBatch(h.pool, delivery());
  expect(again.outcomes).toEqual(['redelivered', 'redelivered']);
  const holding = `(SELECT payload FROM event_journal WHERE topic = $1 UNION ALL SELECT payload FROM event_dlq WHERE topic = $1) p
                   WHERE payload->>'email' = $2`;
  expect(await count(holding, [topic, email])).toBe(0);

  // Another record at the same coordinates (the topic was re-created): new, journaled.
  const other = await appendBatch(h.pool, [record(topic, { tenant_id: 'acme', email: 'new@example.com' }, 41)]);
  expect(other.outcomes).toEqual(['journaled']);
});

it('the removed_records note holds no personal data: coordinates and a hash keyed by the erasure salt', async () => {
  const { rows } = await h.pool.query<Record<string, unknown>>('SELECT * FROM removed_records WHERE removed_by = $1', [
    'erasure',
  ]);
  expect(rows.length).toBeGreaterThan(0);
  for (const row of rows) {
    expect(Object.keys(row).sort()).toEqual(
      ['kafka_offset', 'kafka_partition', 'received_at', 'record_hash', 'removed_at', 'removed_by', 'topic'].sort(),
    );
    expect(JSON.stringify(row)).not.toContain('example.com');
  }
  // Not the plain content hash: without the salt, a guessed record cannot be tested against it.
  const plain = await count(
    `removed_records r JOIN event_journal j USING (topic, kafka_partition, kafka_offset) WHERE r.record_hash = j.content_hash`,
    [],
  );
  expect(plain).toBe(0);
});

it('whatever is erased and however the records come again, nothing is stored twice and the subject stays erased', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.record({ who: fc.constantFrom('a', 'b', 'c'), tenant: fc.boolean(), n: fc.nat(1000) }), {
        minLength: 1,
        maxLength: 30,
      }),
      fc.integer({ min: 1, max: 7 }),
      fc.integer(),
      async (events, batchSize, seed) => {
        const topic = h.topics.jobs;
        await h.pool.query('DELETE FROM event_journal WHERE topic = $1', [topic]);
        await h.pool.query('DELETE FROM event_dlq WHERE topic = $1', [topic]);
        const base = nextOffset;
        nextOffset += events.length;
        const email = (who: string) => `${who}-${base}@example.com`;
        const delivery = () =>
          events.map((e, i) =>
            record(topic, { ...(e.tenant ? { tenant_id: 'acme' } : {}), email: email(e.who), n: e.n }, base + i, i % 3),
          );
        await appendBatch(h.pool, delivery());
        const stored = async () => ({
          journal: await count('event_journal WHERE topic = $1', [topic]),
          dlq: await count('event_dlq WHERE topic = $1', [topic]),
        });
        await erase({ kind: 'subject', field: 'email', value: email('a') }, `erasure-property-${base}`);
        const after = await stored();

        // Everything delivered again, shuffled, in batches of any size.
        const again = fc.sample(fc.shuffledSubarray(delivery(), { minLength: events.length }), { seed, numRuns: 1 })[0];
        for (let i = 0; i < again.length; i += batchSize) {
          const { outcomes } = await appendBatch(h.pool, again.slice(i, i + batchSize));
          expect(outcomes.every((o) => o === 'redelivered')).toBe(true);
        }
        expect(await stored()).toEqual(after);
        const left = `(SELECT payload FROM event_journal WHERE topic = $1 UNION ALL SELECT payload FROM event_dlq WHERE topic = $1) p
                      WHERE payload->>'email' = $2`;
        expect(await count(left, [topic, email('a')])).toBe(0);
      },
    ),
    { numRuns: 15, endOnFailure: true },
  );
});

/** One maintenance pass over the given topic's slices with the real activities: archive, verify, remove. */
async function retain(topic: string, workflowId: string, horizonMs: number | null) {
  const deps = activityDeps(h);
  const activities = createMaintenanceActivities({
    ...deps,
    config: { ...deps.config, journal: { ...deps.config.journal, redeliveryHorizonMs: horizonMs } },
  });
  await inActivity(() => activities.maintenanceStarted({ workflowId, request: {} }));
  const steps = (await inActivity(() => activities.planJournalRetention({ now: Date.now() }))).filter(
    (s) => s.action === 'drop_partition' || s.topic === topic,
  );
  for (const step of steps) {
    const { segment } = await inActivity(() => activities.archiveRetentionStep({ workflowId, step }));
    if (segment) await inActivity(() => activities.applyRetentionStep({ workflowId, step, segment }));
  }
  return { activities };
}

it('a record redelivered after retention archived and removed its row is not journaled a second time', async () => {
  const topic = `${h.topics.leads}.retained`;
  const delivery = () => [record(topic, { tenant_id: 'acme', email: 'old@example.com' }, 7, 1)];
  expect((await appendBatch(h.pool, delivery())).outcomes).toEqual(['journaled']);
  // Received long ago, past a 30-day retention; the topic's Kafka retention is unlimited (horizon "forever").
  await h.pool.query(`UPDATE event_journal SET received_at = '2025-01-15T00:00:00Z' WHERE topic = $1`, [topic]);
  await putRetentionRows(h.pool, { [topic]: 30 }, 'test');
  await retain(topic, 'retention-redelivery', null);
  const archived = (await listSegments(h.archive)).filter((m) => m.segment.includes('retained'));
  expect(archived.map((m) => m.rows)).toEqual([1]);
  expect(await count('event_journal WHERE topic = $1', [topic])).toBe(0);

  const again = await appendBatch(h.pool, delivery());
  expect(again.outcomes).toEqual(['redelivered']);
  expect(await count('event_journal WHERE topic = $1', [topic])).toBe(0);
});

it('rows received before the redelivery horizon are not remembered, and notes past it are pruned', async () => {
  const topic = `${h.topics.leads}.beyond`;
  await appendBatch(h.pool, [record(topic, { tenant_id: 'acme', n: 1 }, 3, 0)]);
  await h.pool.query(`UPDATE event_journal SET received_at = '2025-01-15T00:00:00Z' WHERE topic = $1`, [topic]);
  await putRetentionRows(h.pool, { [topic]: 30 }, 'test');
  const { activities } = await retain(topic, 'retention-beyond', 15 * 86_400_000);
  expect(await count('event_journal WHERE topic = $1', [topic])).toBe(0);
  expect(await count('removed_records WHERE topic = $1', [topic])).toBe(0);

  // A note older than the horizon (Kafka can no longer deliver that record) is forgotten by maintenance.
  await h.pool.query(
    `INSERT INTO removed_records (topic, kafka_partition, kafka_offset, record_hash, removed_by, received_at)
     VALUES ($1, 0, 1, '\\x00', 'retention', now() - interval '20 days'), ($1, 0, 2, '\\x00', 'retention', now())`,
    [topic],
  );
  const pruned = await inActivity(() =>
    activities.pruneRemovedRecords({ workflowId: 'retention-beyond', now: Date.now() }),
  );
  expect(pruned).toBeGreaterThanOrEqual(1);
  expect(await count('removed_records WHERE topic = $1', [topic])).toBe(1);
  const { rows } = await h.pool.query(
    `SELECT a FROM lifecycle_audit, jsonb_array_elements(actions) a WHERE workflow_id = 'retention-beyond'`,
  );
  expect(rows.map((r) => r.a)).toContainEqual(expect.objectContaining({ action: 'removed_records_pruned' }));
});

it('retention deletes dead letters past their topic retention, keeps the others, and their records stay known', async () => {
  const leads = `${h.topics.leads}.dlq`;
  const other = `${h.topics.jobs}.dlq`;
  const rest = `${h.topics.jobs}.dlq-rest`;
  // Dead letters (no tenant): an old and a recent one of leads (10 days), an old one of a topic kept for ever, and an
  // old one of a topic without its own policy ("*": 20 days).
  const oldLead = () => record(leads, { email: 'ann@example.com' }, 1);
  await appendBatch(h.pool, [oldLead(), record(leads, { email: 'bob@example.com' }, 2)]);
  await appendBatch(h.pool, [record(other, { email: 'cy@example.com' }, 1)]);
  await appendBatch(h.pool, [record(rest, { email: 'di@example.com' }, 1)]);
  await h.pool.query(
    `UPDATE event_dlq SET received_at = now() - interval '25 days' WHERE (topic = $1 AND kafka_offset = 1) OR topic IN ($2, $3)`,
    [leads, other, rest],
  );
  await putRetentionRows(h.pool, { [leads]: 10, [other]: null, '*': 20 }, 'test');
  const deps = activityDeps(h);
  const activities = createMaintenanceActivities({
    ...deps,
    config: { ...deps.config, journal: { ...deps.config.journal, redeliveryHorizonMs: 30 * 86_400_000 } },
  });
  await inActivity(() => activities.maintenanceStarted({ workflowId: 'dlq-retention', request: {} }));
  const deleted = await inActivity(() =>
    activities.expireDeadLetters({ workflowId: 'dlq-retention', now: Date.now() }),
  );
  expect(deleted).toBeGreaterThanOrEqual(2);
  const left = await h.pool.query<{ topic: string; kafka_offset: string }>(
    'SELECT topic, kafka_offset::text FROM event_dlq WHERE topic = ANY($1) ORDER BY topic, kafka_offset',
    [[leads, other, rest]],
  );
  expect(left.rows).toEqual(
    [
      { topic: other, kafka_offset: '1' },
      { topic: leads, kafka_offset: '2' },
    ].sort((a, b) => a.topic.localeCompare(b.topic)),
  );
  const { rows: audit } = await h.pool.query(
    `SELECT a FROM lifecycle_audit, jsonb_array_elements(actions) a WHERE workflow_id = 'dlq-retention'`,
  );
  expect(audit.map((r) => r.a)).toEqual(
    expect.arrayContaining([
      expect.objectContaining({ action: 'dead_letters_deleted', topic: leads, rows: 1 }),
      expect.objectContaining({ action: 'dead_letters_deleted', topic: '*' }),
    ]),
  );
  // The expired dead letter's record, delivered again within the horizon, is not dead-lettered a second time.
  expect((await appendBatch(h.pool, [oldLead()])).outcomes).toEqual(['redelivered']);
  expect(await count('event_dlq WHERE topic = $1', [leads])).toBe(1);
});

it('rows written before 007 (no content hash) removed by retention are known by their legacy content', async () => {
  const topic = `${h.topics.leads}.legacy`;
  const payload = { tenant_id: 'acme', email: 'legacy@example.com' };
  const raw = '{"not json';
  // As schemas 001-006 wrote them: coordinates, no content hash; received long ago.
  await h.pool.query(
    `INSERT INTO event_journal (tenant_id, topic, payload, kafka_partition, kafka_offset, received_at)
     VALUES ('acme', $1, $2, 0, 11, '2025-01-15T00:00:00Z')`,
    [topic, JSON.stringify(payload)],
  );
  await h.pool.query(
    `INSERT INTO event_dlq (topic, raw_value, error, reason, kafka_partition, kafka_offset, received_at)
     VALUES ($1, $2, 'Unexpected end of JSON input', 'invalid_json', 0, 12, '2025-01-15T00:00:00Z')`,
    [topic, raw],
  );
  await putRetentionRows(h.pool, { [topic]: 30 }, 'test');
  const { activities } = await retain(topic, 'retention-legacy', null);
  await inActivity(() => activities.expireDeadLetters({ workflowId: 'retention-legacy', now: Date.now() }));
  expect(await count('event_journal WHERE topic = $1', [topic])).toBe(0);
  expect(await count('event_dlq WHERE topic = $1', [topic])).toBe(0);
  expect(await count('removed_records WHERE topic = $1', [topic])).toBe(2);

  const rawRecord = parseRecord(
    { topic, partition: 0, offset: '12', key: null, value: Buffer.from(raw), timestamp: '1764547199000' },
    { maxBytes: 1024 * 1024, lineageKey: h.lineageKey },
  );
  const again = await appendBatch(h.pool, [record(topic, payload, 11), rawRecord]);
  expect(again.outcomes).toEqual(['redelivered', 'redelivered']);
  // Other content at those coordinates is new.
  expect((await appendBatch(h.pool, [record(topic, { tenant_id: 'acme', n: 2 }, 11)])).outcomes).toEqual(['journaled']);
});

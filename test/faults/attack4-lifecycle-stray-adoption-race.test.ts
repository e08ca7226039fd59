import { ensurePartitions } from '../../lifecycle/partitions';
import { nextPeriod, periodStart } from '../../lifecycle/periods';
import { listJournalPartitions } from '../../repository/journal-partitions';
import { createPool, type Pool } from '../../shared/db';
import { createLogger } from '../../shared/logger';
import { createTestDatabase } from '../support/database';
import { baseConfig } from '../support/env';
import { eventually } from '../support/sink';

/**
 * Strays (docs/lifecycle.md, section 1): when maintenance has been stopped longer than the partitions ahead, ingest
 * writes now()'s rows into the default partition, and the next ensurePartitions adopts them. Adoption moves the
 * default partition's rows of the new range, then ATTACHes the partition, which waits for in-flight writers and then
 * checks that the default partition holds no row of the range. A writer that journaled a stray of that range while
 * the adoption ran (ingest keeps writing: the strays are now()'s rows) makes the ATTACH fail with 23514, which
 * ensurePartitions does not handle: maintenance, and every start (prepareDatabase), fail for as long as ingest writes.
 */
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let pool: Pool;
let writerPool: Pool;

beforeAll(async () => {
  db = await createTestDatabase(baseConfig().databaseUrl, 'attack4_stray_adoption');
  pool = createPool(db.databaseUrl, 4, createLogger('silent'));
  writerPool = createPool(db.databaseUrl, 2, createLogger('silent'));
});
afterAll(async () => {
  await pool?.end();
  await writerPool?.end();
  await db?.drop();
});

it('creating the partition of the strays while ingest writes one more stray of its range adopts it, without failing', async () => {
  // "Now" for maintenance: just past the newest partition, so that period's rows are strays in the default partition.
  const partitions = (await listJournalPartitions(pool)).filter((p) => !p.isDefault && p.to !== null);
  const newest = new Date(Math.max(...partitions.map((p) => p.to!.getTime())));
  const strayAt = new Date(newest.getTime() + 3_600_000);
  expect(nextPeriod(periodStart(strayAt, 'month'), 'month') > strayAt).toBe(true);
  await pool.query(
    `INSERT INTO event_journal (tenant_id, topic, payload, received_at) VALUES ('acme', 'strays', '{"n": 1}', $1)`,
    [strayAt],
  );

  // Ingest, mid-transaction: one more stray of that period, written before the adoption and committed during it.
  const writer = await writerPool.connect();
  try {
    await writer.query('BEGIN');
    await writer.query(
      `INSERT INTO event_journal (tenant_id, topic, payload, received_at) VALUES ('acme', 'strays', '{"n": 2}', $1)`,
      [strayAt],
    );
    const adoption = ensurePartitions(pool, 'month', 0, strayAt).then(
      (created) => ({ created, error: undefined }),
      (error: Error & { code?: string }) => ({ created: undefined, error }),
    );
    // The adoption is waiting for the writer's lock on the default partition: the writer commits.
    await eventually(async () => {
      const { rows } = await pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
          WHERE NOT l.granted AND c.relname = 'event_journal_default'`,
      );
      return rows[0].n > 0 ? true : undefined;
    }, 'the adoption waiting for the default partition');
    await writer.query('COMMIT');
    const result = await adoption;
    expect(result.error?.message).toBeUndefined();
  } finally {
    writer.release();
  }
  const { rows } = await pool.query<{ part: string }>(
    `SELECT tableoid::regclass::text AS part FROM event_journal WHERE topic = 'strays'`,
  );
  expect(rows.map((r) => r.part)).not.toContain('event_journal_default');
  expect(rows).toHaveLength(2);
});

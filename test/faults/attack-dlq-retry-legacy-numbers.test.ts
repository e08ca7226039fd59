import { journalDeadLetter } from '../../journal/dead-letter';
import { getDlqEntry } from '../../repository/event-dlq';
import { createPool, withTransaction, type Pool } from '../../shared/db';
import { createLogger } from '../../shared/logger';
import { createTestDatabase } from '../support/database';
import { baseConfig } from '../support/env';

/**
 * Attack on the DLQ retry path (journal/dead-letter.ts) and invariant 6's promise that numbers keep every digit.
 * A dead letter written before migration 007 has no raw_bytes: only its payload as jsonb. The retry rebuilds the
 * record's value with JSON.stringify(entry.payload), i.e. jsonb -> JSON.parse (node-postgres) -> stringify: the very
 * round trip issue 10 removed from replays. A number beyond 2^53 is rounded and 1e400 becomes null, and that altered
 * payload is what gets journaled and marked resolved.
 */

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let pool: Pool;
const options = { maxBytes: 1024 * 1024, lineageKey: Buffer.alloc(32, 7) };

beforeAll(async () => {
  db = await createTestDatabase(baseConfig().databaseUrl, 'attack_dlq_legacy');
  pool = createPool(db.databaseUrl, 2, createLogger('silent'));
});
afterAll(async () => {
  await pool?.end();
  await db?.drop();
});

it('retrying a pre-007 dead letter journals its payload digit for digit', async () => {
  const payload = '{"tenant_id": "acme", "big": 123456789012345678901234567890, "huge": 1e400, "money": 1.50}';
  // A dead letter as the service wrote it before migration 007: payload as jsonb, no raw bytes, no content hash.
  const { rows } = await pool.query<{ id: number }>(
    `INSERT INTO event_dlq (topic, tenant_id, payload, error, reason, kafka_partition, kafka_offset)
     VALUES ('legacy.leads.created', 'acme', $1::jsonb, 'Insert into event_journal failed', 'db_error', 0, 41)
     RETURNING id`,
    [payload],
  );
  const result = await withTransaction(pool, async (client) => {
    const entry = await getDlqEntry(client, rows[0].id, true);
    return journalDeadLetter(client, entry!, options);
  });
  expect(result).toHaveProperty('journalId');
  const { rows: same } = await pool.query<{ journaled: string; dead: string; equal: boolean }>(
    `SELECT j.payload::text AS journaled, d.payload::text AS dead, j.payload = d.payload AS equal
       FROM event_journal j, event_dlq d WHERE j.id = $1 AND d.id = $2`,
    [(result as { journalId: number }).journalId, rows[0].id],
  );
  expect(same[0].journaled).toBe(same[0].dead);
  expect(same[0].equal).toBe(true);
});

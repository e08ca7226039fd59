import {
  AUDIT_STATUSES,
  DLQ_REASONS,
  DLQ_REPAIR_OUTCOMES,
  DLQ_REPAIR_STATUSES,
  DLQ_STATUSES,
  ERASURE_STORES,
  LIFECYCLE_KINDS,
  LIFECYCLE_STATUSES,
  REMOVERS,
  NOTIFICATION_DELIVERY_STATUSES,
  NOTIFICATION_KINDS,
  REPLAY_KINDS,
  SEND_DECISIONS,
} from '../../journal/kinds';
import { createPool, type Pool } from '../../shared/db';
import { createLogger } from '../../shared/logger';
import { createTestDatabase } from '../support/database';
import { baseConfig } from '../support/env';

// Each closed list is defined once, in journal/kinds.ts; the CHECK constraints of the migrated schema must allow
// exactly those values. Read from Postgres itself, so the test sees what the migrations produced, in order.

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let pool: Pool;

beforeAll(async () => {
  db = await createTestDatabase(baseConfig().databaseUrl, 'kinds');
  pool = createPool(db.databaseUrl, 1, createLogger('silent'));
});
afterAll(async () => {
  await pool?.end();
  await db?.drop();
});

/** The values a CHECK (column IN (…)) on table allows, as Postgres stores it (column = ANY (ARRAY[…])). */
async function allowed(table: string, column: string): Promise<string[]> {
  const { rows } = await pool.query<{ def: string }>(
    `SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint
      WHERE contype = 'c' AND conrelid = $1::regclass AND pg_get_constraintdef(oid) ~ ('\\m' || $2 || '\\M')`,
    [table, column],
  );
  expect(rows).toHaveLength(1);
  return [...rows[0].def.matchAll(/'([^']*)'::text/g)].map((m) => m[1]);
}

it.each([
  ['replay_audit', 'kind', REPLAY_KINDS],
  ['replay_audit', 'status', AUDIT_STATUSES],
  ['event_dlq', 'status', DLQ_STATUSES],
  ['event_dlq', 'reason', DLQ_REASONS],
  ['lifecycle_audit', 'kind', LIFECYCLE_KINDS],
  ['lifecycle_audit', 'status', LIFECYCLE_STATUSES],
  ['erasure_counts', 'store', ERASURE_STORES],
  ['removed_records', 'removed_by', REMOVERS],
  ['notification_endpoints', 'kind', NOTIFICATION_KINDS],
  ['notification_deliveries', 'kind', NOTIFICATION_KINDS],
  ['notification_deliveries', 'status', NOTIFICATION_DELIVERY_STATUSES],
  ['dlq_repairs', 'status', DLQ_REPAIR_STATUSES],
  ['dlq_repair_entries', 'outcome', DLQ_REPAIR_OUTCOMES],
  ['send_progress_sent', 'kind', SEND_DECISIONS],
])('%s.%s allows exactly the values journal/kinds.ts lists', async (table, column, values) => {
  expect((await allowed(table, column)).sort()).toEqual([...values].sort());
});

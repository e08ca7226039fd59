import { deleteMatches } from '../../repository/erasure-match';
import { createPool, type Pool } from '../../shared/db';
import { createLogger } from '../../shared/logger';
import { createTestDatabase } from '../support/database';
import { baseConfig } from '../support/env';

/**
 * attack34, found while attacking 9e546f0 (not its interleaving claim: the DLQ pass's match, repository/erasure-match.ts
 * dlqPredicate, older than it).
 *
 * Invariant: once an erasure completes, no journal or DLQ row of the subject that existed before it started remains.
 *
 * Attack: a dead letter kept without a payload (too large, or not valid JSON) is matched by the subject's value in its
 * raw bytes. JSON may carry that value escaped: a producer that writes ASCII-only JSON (Python's json.dumps, Jackson's
 * ESCAPE_NON_ASCII) sends "j\u00fcrgen@example.com" for jürgen@example.com. The raw bytes never hold the value, so
 * the DLQ pass leaves the dead letter; it holds the subject's email (and, retried once the size limit is raised, it
 * journals a row whose payload holds it, after the erasure).
 * Observed on main: deleteMatches deletes 0 of the subject's 1 dead letter.
 * Fixed: the DLQ pass looks for the value in such text in every form JSON writers escape it to (textForms: \uXXXX
 * in either case, '\/', quotes and backslashes escaped; test/unit/erasure-text-forms.test.ts checks them against Python).
 */
jest.setTimeout(30_000);

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let pool: Pool;
beforeAll(async () => {
  db = await createTestDatabase(baseConfig().databaseUrl, 'a34_dlq_escaped');
  pool = createPool(db.databaseUrl, 2, createLogger('silent'));
});
afterAll(async () => {
  await pool?.end();
  await db?.drop();
});

it("the DLQ pass erases a payload-less dead letter whose JSON holds the subject's value escaped", async () => {
  const raw = '{"tenant_id":"t1","email":"j\\u00fcrgen@example.com","note":"' + 'x'.repeat(64) + '"}';
  expect(JSON.parse(raw).email).toBe('jürgen@example.com');
  await pool.query(
    `INSERT INTO event_dlq (topic, raw_value, raw_bytes, error, reason, kafka_partition, kafka_offset, received_at)
     VALUES ('crm.contacts', $1, convert_to($1, 'UTF8'), 'Record value is 1048700 bytes, over the limit', 'too_large', 0, 1, now())`,
    [raw],
  );
  const client = await pool.connect();
  let deleted: number;
  try {
    deleted = await deleteMatches(
      client,
      'event_dlq',
      { kind: 'subject', field: 'email', value: 'jürgen@example.com' },
      'erasure-a34',
      0,
      1_000_000,
      null,
    );
  } finally {
    client.release();
  }
  const { rows } = await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM event_dlq`);
  expect({ deleted, left: rows[0].n }).toEqual({ deleted: 1, left: 0 });
});

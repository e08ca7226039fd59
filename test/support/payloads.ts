import type { Pool } from 'pg';

/**
 * Journals these payloads as rows of one tenant and topic, received one millisecond apart an hour ago, straight into
 * Postgres (the filters under test read the journal; how rows got there does not matter to them). Ids in order.
 */
export async function journalPayloads(
  pool: Pool,
  tenantId: string,
  topic: string,
  payloads: Record<string, unknown>[],
): Promise<number[]> {
  const { rows } = await pool.query<{ id: string }>(
    `INSERT INTO event_journal (tenant_id, topic, payload, received_at)
     SELECT $1, $2, p.value, now() - interval '1 hour' + make_interval(secs => p.ord / 1000.0)
       FROM unnest($3::jsonb[]) WITH ORDINALITY AS p(value, ord)
      ORDER BY p.ord
     RETURNING id`,
    [tenantId, topic, payloads.map((p) => JSON.stringify(p))],
  );
  return rows.map((r) => Number(r.id)).sort((a, b) => a - b);
}

import type { Queryable } from './queryable';

/** A retention policy row: days to keep a topic's events (null: forever). '*' stands for every other topic. */
export interface RetentionRow {
  topic: string;
  keep_days: number | null;
  updated_by: string;
  updated_at: Date;
}

export async function listRetentionRows(db: Queryable): Promise<RetentionRow[]> {
  const { rows } = await db.query<RetentionRow>(
    'SELECT topic, keep_days, updated_by, updated_at FROM retention_policies ORDER BY topic',
  );
  return rows;
}

/** Sets the policies given (topic → days or null = forever), all at once; other topics keep theirs. */
export async function putRetentionRows(
  db: Queryable,
  policies: Record<string, number | null>,
  actor: string,
): Promise<void> {
  const topics = Object.keys(policies);
  if (topics.length === 0) return;
  await db.query(
    `INSERT INTO retention_policies (topic, keep_days, updated_by)
     SELECT t, d, $3 FROM unnest($1::text[], $2::int[]) AS p(t, d)
     ON CONFLICT (topic) DO UPDATE SET keep_days = EXCLUDED.keep_days, updated_by = EXCLUDED.updated_by,
                                       updated_at = now()`,
    [topics, topics.map((t) => policies[t]), actor],
  );
}

/** The topics present in one journal partition: a skip scan over its (topic, received_at) index. */
export async function topicsInPartition(db: Queryable, partition: string): Promise<string[]> {
  const { rows } = await db.query<{ topic: string }>(
    `WITH RECURSIVE t AS (
       (SELECT topic FROM ${partition} ORDER BY topic LIMIT 1)
       UNION ALL
       SELECT (SELECT topic FROM ${partition} WHERE topic > t.topic ORDER BY topic LIMIT 1) FROM t
        WHERE t.topic IS NOT NULL
     ) SELECT topic FROM t WHERE topic IS NOT NULL`,
  );
  return rows.map((r) => r.topic);
}

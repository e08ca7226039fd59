import type { Queryable } from './queryable';
import { rememberRemovedSql } from './removed-records';

/** Dead letters a retention policy covers: one topic's, or those of every topic without a policy of its own. */
export type DeadLetterSelection = { topic: string } | { exceptTopics: string[] };

/**
 * Deletes at most `limit` dead letters of the selection received before `before` (the oldest ids first), remembering
 * in removed_records those Kafka may still deliver again (received since `horizon`; null = all), in one statement;
 * returns how many. Called until it deletes fewer than `limit`.
 */
export async function deleteExpiredDeadLetters(
  db: Queryable,
  selection: DeadLetterSelection,
  before: Date,
  limit: number,
  horizon: Date | null,
): Promise<number> {
  const values: unknown[] = [before, limit, horizon];
  const topic =
    'topic' in selection
      ? `topic = $${values.push(selection.topic)}`
      : `topic <> ALL ($${values.push(selection.exceptTopics)}::text[])`;
  const { rows } = await db.query<{ n: number }>(
    `WITH gone AS (DELETE FROM event_dlq
                    WHERE id IN (SELECT id FROM event_dlq WHERE ${topic} AND received_at < $1 ORDER BY id LIMIT $2)
                    RETURNING topic, kafka_partition, kafka_offset, content_hash, received_at, payload, raw_value),
          remembered AS (${rememberRemovedSql('gone', 'true', 'retention', '$3', 'event_dlq')})
     SELECT count(*)::int AS n FROM gone`,
    values,
  );
  return rows[0].n;
}

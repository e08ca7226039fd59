import type { Queryable } from './queryable';

/**
 * What a rate-limited request learns: admitted, with the hit it was recorded as (the database's time, as text, for
 * giveBackRateSlot), or refused with the seconds until a slot frees up.
 */
export type RateDecision = { admitted: true; hit: string } | { admitted: false; retryAfterSeconds: number };

/**
 * Counts one request of `caller` against a sliding one-minute window of `perMinute` requests, on the database's
 * clock (API instances' clocks may differ). One statement: the row lock of ON CONFLICT DO UPDATE serialises two
 * instances counting the same caller, so together they never admit more than the budget.
 */
export async function takeRateSlot(db: Queryable, caller: string, perMinute: number): Promise<RateDecision> {
  // The refused branch reads the caller's hits in a second subquery; its snapshot may predate a row another instance
  // just inserted, so "refused" comes from the CTE alone and a missing retry time falls back to the whole window.
  const { rows } = await db.query<{ hit: string | null; retry_after: number | null }>(
    `WITH taken AS (
       INSERT INTO api_rate_limit AS r (caller, hits, last_hit) VALUES ($1, ARRAY[now()], now())
       ON CONFLICT (caller) DO UPDATE
          SET hits = ARRAY(SELECT h FROM unnest(r.hits) h WHERE h > now() - interval '1 minute' ORDER BY h) || now(),
              last_hit = now()
        WHERE (SELECT count(*) FROM unnest(r.hits) h WHERE h > now() - interval '1 minute') < $2
       RETURNING now()::text AS hit
     )
     SELECT (SELECT hit FROM taken) AS hit,
            (SELECT ceil(extract(epoch FROM min(h) + interval '1 minute' - now()))::int
               FROM api_rate_limit, unnest(hits) h
              WHERE caller = $1 AND h > now() - interval '1 minute') AS retry_after`,
    [caller, perMinute],
  );
  const { hit, retry_after: retryAfter } = rows[0];
  return hit !== null ? { admitted: true, hit } : { admitted: false, retryAfterSeconds: Math.max(1, retryAfter ?? 60) };
}

/**
 * Gives back a slot takeRateSlot admitted: removes one hit of that time from the caller's window (two requests
 * counted at the same instant are alike, so either one goes). Nothing once the hit has left the window.
 */
export async function giveBackRateSlot(db: Queryable, caller: string, hit: string): Promise<void> {
  // One statement: the row lock orders it with the takes of other instances, and it edits the window they left.
  await db.query(
    `UPDATE api_rate_limit
        SET hits = hits[:array_position(hits, $2::timestamptz) - 1] || hits[array_position(hits, $2::timestamptz) + 1:]
      WHERE caller = $1 AND $2::timestamptz = ANY (hits)`,
    [caller, hit],
  );
}

/** A recorded Idempotency-Key: the workflow its first request started, and what that request asked for. */
export interface IdempotencyRecord {
  workflowId: string;
  fingerprint: string;
  /** True when this call recorded it (the first request), false when it was already there. */
  created: boolean;
}

/**
 * Records a key for a workflow id, or returns what an earlier request (on any instance) recorded for it. Two
 * requests racing with one key both get the same workflow id back. A key is never released when its workflow fails
 * to start: a retry with the key starts that same workflow id.
 */
export async function claimIdempotencyKey(
  db: Queryable,
  keyHash: string,
  workflowId: string,
  fingerprint: string,
): Promise<IdempotencyRecord> {
  // DO UPDATE (a no-op) rather than DO NOTHING, so that RETURNING also yields the row another request inserted.
  const { rows } = await db.query<{ workflow_id: string; fingerprint: string; created: boolean }>(
    `INSERT INTO api_idempotency_keys AS k (key_hash, workflow_id, fingerprint) VALUES ($1, $2, $3)
     ON CONFLICT (key_hash) DO UPDATE SET key_hash = k.key_hash
     RETURNING workflow_id, fingerprint, (xmax = 0) AS created`,
    [keyHash, workflowId, fingerprint],
  );
  return { workflowId: rows[0].workflow_id, fingerprint: rows[0].fingerprint, created: rows[0].created };
}

/**
 * Deletes rate-limit rows with no request in the last minute and Idempotency-Keys older than `keyTtlSeconds`, at
 * most `batch` rows of each per call (a long backlog is worked off over several calls, never in one long lock).
 */
export async function pruneApiLimits(
  db: Queryable,
  keyTtlSeconds: number,
  batch = 10_000,
): Promise<{ rateRows: number; keys: number }> {
  const rate = await db.query(
    `DELETE FROM api_rate_limit WHERE caller IN (
       SELECT caller FROM api_rate_limit WHERE last_hit < now() - interval '1 minute' LIMIT $1)`,
    [batch],
  );
  const keys = await db.query(
    `DELETE FROM api_idempotency_keys WHERE key_hash IN (
       SELECT key_hash FROM api_idempotency_keys WHERE created_at < now() - make_interval(secs => $1) LIMIT $2)`,
    [keyTtlSeconds, batch],
  );
  return { rateRows: rate.rowCount ?? 0, keys: keys.rowCount ?? 0 };
}

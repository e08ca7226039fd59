import type { ErasureStore } from '../journal/kinds';
import type { Producer } from 'kafkajs';
import type { ErasureTarget } from '../lifecycle/erasure-target';
import { awaitBarrierHolders, holdBarrier } from '../shared/barrier';
import { keepingAttemptAlive, replayFencing, sendAttemptSignal, withSendGuard } from '../shared/kafka';
import { withTransaction, type Pool } from '../shared/db';
import type { Queryable } from './queryable';

/**
 * The tables of erasure's own bookkeeping (sql/010_erasure.sql, 017_erasure_claims.sql, 018_...): the subject of a
 * running erasure (erasure_subjects) and the requests and workflows it is kept for (erasure_subject_claims), the
 * journal ids erased (erased_events) and the rows erased per store (erasure_counts). None holds a subject's value for
 * longer than an erasure that needs it may run.
 */

/**
 * Keeps the target of an erasure about to start under its hash, where its activities find it, claimed by the request
 * that will start workflow `workflowId` (the API writes both, in one statement, before the start). Returns the claim's
 * own token: each request has its own claim, even one sent again with its Idempotency-Key (naming the workflow a first
 * one already claimed), so a request whose start was refused releases its claim only (releaseErasureClaims), never the
 * one an accepted request of the same workflow relies on. Without a workflow id (a caller starting the workflow itself)
 * the target is kept until an erasure of it ends, and there is no claim.
 */
export async function storeErasureSubject(
  db: Queryable,
  hash: string,
  target: ErasureTarget,
  workflowId?: string,
): Promise<string | undefined> {
  const { rows } = await db.query<{ claim_id: string }>(
    `WITH subject AS (
       INSERT INTO erasure_subjects (subject_hash, target) VALUES ($1, $2)
       ON CONFLICT (subject_hash) DO UPDATE SET created_at = now())
     INSERT INTO erasure_subject_claims (workflow_id, subject_hash) SELECT $3, $1 WHERE $3::text IS NOT NULL
     RETURNING claim_id`,
    [hash, JSON.stringify(target), workflowId ?? null],
  );
  return rows[0]?.claim_id;
}

/**
 * The workflows whose newest claim is older than `olderThanMs` (the API's prune asks Temporal whether each one still
 * runs): a request sent again for a workflow keeps all its claims young, its start possibly still on its way.
 */
export async function staleErasureClaims(
  db: Queryable,
  olderThanMs: number,
): Promise<{ workflowId: string; subjectHash: string; claimIds: string[] }[]> {
  const { rows } = await db.query<{ workflow_id: string; subject_hash: string; claim_ids: string[] }>(
    `SELECT workflow_id, subject_hash, array_agg(claim_id::text) AS claim_ids FROM erasure_subject_claims
      GROUP BY workflow_id, subject_hash
      HAVING max(created_at) < now() - make_interval(secs => $1 / 1000.0) ORDER BY max(created_at) LIMIT 1000`,
    [olderThanMs],
  );
  return rows.map((r) => ({ workflowId: r.workflow_id, subjectHash: r.subject_hash, claimIds: r.claim_ids }));
}

/** The target stored under hash, or undefined once its erasures have finished. */
export async function loadErasureSubject(db: Queryable, hash: string): Promise<ErasureTarget | undefined> {
  const { rows } = await db.query<{ target: ErasureTarget }>(
    'SELECT target FROM erasure_subjects WHERE subject_hash = $1',
    [hash],
  );
  return rows[0]?.target;
}

/**
 * Releases every claim of erasure `erasureId` on the stored target (its end, or the prune once Temporal shows it is not
 * running), and deletes the target once no other erasure claims it or is still running (one may have been requested
 * while this one ran: it still needs the value).
 */
export async function forgetErasureSubject(pool: Pool, hash: string, erasureId: string): Promise<void> {
  await releaseAndForget(pool, hash, 'workflow_id', [erasureId], erasureId);
}

/**
 * Releases requests' claims (storeErasureSubject's tokens: one whose start was refused, or those the prune saw on a
 * workflow Temporal does not run), and deletes the target once nothing else claims it or runs for it: the claims of
 * other requests, of this workflow (a resend since) or another, stay.
 */
export async function releaseErasureClaims(pool: Pool, hash: string, claimIds: string[]): Promise<void> {
  await releaseAndForget(pool, hash, 'claim_id', claimIds, null);
}

async function releaseAndForget(
  pool: Pool,
  hash: string,
  by: 'workflow_id' | 'claim_id',
  ids: string[],
  endingErasureId: string | null,
): Promise<void> {
  await withTransaction(pool, async (client) => {
    // The subject's row first, locked: a request storing it (storeErasureSubject's upsert) either committed its claim
    // before this, and the check below (a statement of its own, so a snapshot taken after the lock) sees it, or waits
    // and stores the row again after this delete.
    await client.query('SELECT 1 FROM erasure_subjects WHERE subject_hash = $1 FOR UPDATE', [hash]);
    await client.query(`DELETE FROM erasure_subject_claims WHERE ${by}::text = ANY($1::text[]) AND subject_hash = $2`, [
      ids,
      hash,
    ]);
    // A running erasure of the subject keeps it, unless it is the one ending here.
    await client.query(
      `DELETE FROM erasure_subjects WHERE subject_hash = $1
          AND NOT EXISTS (SELECT 1 FROM erasure_subject_claims WHERE subject_hash = $1)
          AND NOT EXISTS (
            SELECT 1 FROM lifecycle_audit WHERE kind = 'erasure' AND status = 'running'
               AND workflow_id IS DISTINCT FROM $2 AND request->>'subject_hash' = $1)`,
      [hash, endingErasureId],
    );
  });
}

/** Of these journal ids, the ones an erasure deleted, with that erasure's id. */
export async function erasuresOf(db: Queryable, ids: number[]): Promise<Map<number, string>> {
  if (ids.length === 0) return new Map();
  const { rows } = await db.query<{ event_id: string; erasure_id: string }>(
    'SELECT event_id::text, erasure_id FROM erased_events WHERE event_id = ANY($1::bigint[])',
    [ids],
  );
  return new Map(rows.map((r) => [Number(r.event_id), r.erasure_id]));
}

/**
 * The barrier between replay sends and erasures (docs/lifecycle.md, erasure; shared/barrier.ts): a replay page holds
 * it from before its erased check until its send has ended (withErasuresChecked); an erasure, once it has recorded
 * erased ids, waits for the pages holding it then (awaitReplaySends). A page that checked before the ids were recorded
 * has then been sent, and one checking after sees them: no page sends an erased row after the erasure completed.
 */
const REPLAY_SEND_BARRIER = 'erasure-replay-send';

/** How long an erasure waits for the replay pages in flight (each bounded by its producer's retries) at most. */
export const REPLAY_SEND_WAIT_MS = 10 * 60_000;

/**
 * Runs a replay page's send with the erasures of its ids (erasuresOf), holding the barrier until the send has ended:
 * `keep` takes each send that may outlive send's return (kafkajs finishes a send its activity gave up on). The
 * barrier's connection is given to send for its reads: asking the pool for another while holding one would starve a
 * small pool (one of one connection held, waiting for a second). `producer` is what the page sends on: the barrier
 * row records its fence scope (replayFencing), which an erasure fences if the page's process goes without ending the
 * send; and every replay-producer send made in `send` first checks, once its transactional epoch is fixed, that the
 * page still holds the barrier (withSendGuard: no erasure has claimed its row to fence it), so that no send of a page
 * counted gone begins after the fence. null only for a page that sends on no Kafka producer (tests of the barrier
 * itself). Its attempt is kept alive meanwhile (keepingAttemptAlive): the page's waits end with its attempt's
 * start-to-close timeout, not with a heartbeat timeout the page never hears of.
 */
export function withErasuresChecked<T>(
  pool: Pool,
  ids: number[],
  producer: Producer | null,
  send: (erased: Map<number, string>, keep: (sending: Promise<unknown>) => void, db: Queryable) => Promise<T>,
): Promise<T> {
  return keepingAttemptAlive(() =>
    holdBarrier(
      pool,
      REPLAY_SEND_BARRIER,
      async (client, keep, held) => withSendGuard(held, async () => send(await erasuresOf(client, ids), keep, client)),
      // A page whose attempt ended while it waited for a holder slot leaves the queue (its retry sends the page).
      { fence: producer ? replayFencing(producer)?.fenceScope : undefined, signal: sendAttemptSignal() },
    ),
  );
}

/** Waits until every replay page that checked its ids before now has ended its send (an erasure's last step). */
export function awaitReplaySends(
  pool: Pool,
  waiting: {
    onWait?: () => void;
    signal?: AbortSignal;
    timeoutMs?: number;
    /** Fences the producers of a page whose process went (ReplayProducer.fenceOthers). */
    fence?: (scope: string) => Promise<void>;
  },
): Promise<void> {
  return awaitBarrierHolders(pool, REPLAY_SEND_BARRIER, {
    ...waiting,
    timeoutMs: waiting.timeoutMs ?? REPLAY_SEND_WAIT_MS,
  });
}

/**
 * Records the ids of archived rows an erasure is dropping from a segment (before the segment's manifest switches to the
 * rewritten file): reads answer 410 for them, and a cold replay still reading the generation it opened leaves them out.
 */
export async function recordErasedArchiveIds(db: Queryable, erasureId: string, ids: number[]): Promise<void> {
  if (ids.length === 0) return;
  await db.query(
    `INSERT INTO erased_events (event_id, erasure_id) SELECT unnest($1::bigint[]), $2 ON CONFLICT (event_id) DO NOTHING`,
    [ids, erasureId],
  );
}

/** Adds a rewritten segment's dropped rows to the erasure's archive count. */
export async function countErasedArchiveRows(db: Queryable, erasureId: string, rows: number): Promise<void> {
  await db.query(
    `INSERT INTO erasure_counts (erasure_id, store, rows, segments) VALUES ($1, 'archive', $2, 1)
     ON CONFLICT (erasure_id, store) DO UPDATE
       SET rows = erasure_counts.rows + EXCLUDED.rows, segments = erasure_counts.segments + 1`,
    [erasureId, rows],
  );
}

/** What an erasure has deleted so far, per store. */
export type ErasureCounts = Record<ErasureStore, { rows: number; segments: number }>;

export async function erasureCounts(db: Queryable, erasureId: string): Promise<ErasureCounts> {
  const { rows } = await db.query<{ store: ErasureStore; rows: string; segments: number }>(
    'SELECT store, rows::text, segments FROM erasure_counts WHERE erasure_id = $1',
    [erasureId],
  );
  const counts: ErasureCounts = {
    journal: { rows: 0, segments: 0 },
    dlq: { rows: 0, segments: 0 },
    archive: { rows: 0, segments: 0 },
  };
  for (const row of rows) counts[row.store] = { rows: Number(row.rows), segments: row.segments };
  return counts;
}

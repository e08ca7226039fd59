import type { ErasureStore } from '../journal/kinds';
import type { ErasureTarget } from '../lifecycle/erasure-target';
import { awaitSharedHolders, withSharedLock, type Pool } from '../shared/db';
import type { Queryable } from './queryable';

/**
 * The tables of erasure's own bookkeeping (sql/010_erasure.sql): the subject of a running erasure (erasure_subjects),
 * the journal ids erased (erased_events) and the rows erased per store (erasure_counts). None holds a subject's value
 * for longer than its erasure runs.
 */

/** Keeps the target of an erasure about to start under its hash, where its activities find it (the API writes it). */
export async function storeErasureSubject(db: Queryable, hash: string, target: ErasureTarget): Promise<void> {
  await db.query(
    `INSERT INTO erasure_subjects (subject_hash, target) VALUES ($1, $2)
     ON CONFLICT (subject_hash) DO UPDATE SET created_at = now()`,
    [hash, JSON.stringify(target)],
  );
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
 * Deletes the stored target once no other erasure of the same subject is still running (one may have been requested
 * while this one ran: it still needs the value).
 */
export async function forgetErasureSubject(db: Queryable, hash: string, erasureId: string): Promise<void> {
  await db.query(
    `DELETE FROM erasure_subjects WHERE subject_hash = $1 AND NOT EXISTS (
       SELECT 1 FROM lifecycle_audit WHERE kind = 'erasure' AND status = 'running' AND workflow_id <> $2
          AND request->>'subject_hash' = $1)`,
    [hash, erasureId],
  );
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
 * The barrier between replay sends and erasures (docs/lifecycle.md, erasure): a replay page holds it shared from its
 * erased check until its send has ended (withErasuresChecked); an erasure, once it has recorded erased ids, takes it
 * exclusively once (awaitReplaySends). A page that checked before the ids were recorded has then been sent, and one
 * checking after sees them: no page sends an erased row after the erasure completed.
 */
const REPLAY_SEND_LOCK = 'erasure-replay-send';

/** How long an erasure waits for the replay pages in flight (each bounded by its producer's retries) at most. */
export const REPLAY_SEND_WAIT_MS = 10 * 60_000;

/**
 * Runs a replay page's send with the erasures of its ids (erasuresOf), holding the barrier until the send has ended:
 * `keep` takes each send that may outlive send's return (kafkajs finishes a send its activity gave up on).
 */
export function withErasuresChecked<T>(
  pool: Pool,
  ids: number[],
  send: (erased: Map<number, string>, keep: (sending: Promise<unknown>) => void) => Promise<T>,
): Promise<T> {
  return withSharedLock(pool, REPLAY_SEND_LOCK, async (client, keep) => send(await erasuresOf(client, ids), keep));
}

/** Waits until every replay page that checked its ids before now has ended its send (an erasure's last step). */
export function awaitReplaySends(
  pool: Pool,
  waiting: { onWait?: () => void; signal?: AbortSignal; timeoutMs?: number },
): Promise<void> {
  return awaitSharedHolders(pool, REPLAY_SEND_LOCK, {
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

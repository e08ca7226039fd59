import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import pg from 'pg';
import { LOCK_NOT_AVAILABLE } from './db';
import { queueTurn, withTimeout } from './timeout';

/**
 * A barrier between holders (replay pages: their check against erased_events, then their Kafka send) and waiters (an
 * erasure, once it has recorded its erased ids): a waiter returns once every holder that began before it was called
 * has ended its work. Its state is rows in barrier_holders (sql/020), not a session lock: a lock goes with its
 * session, and a session can end (Postgres restarted or failed over, a connection reset) while the send it guarded
 * goes on; and a waiter queued on a lock lets later holders in each time its try gives up, so a stream of long
 * overlapping sends starved it.
 *
 * A holder commits its row before its work reads anything (so before its check: a waiter called after its ids were
 * committed sees the row of every holder whose check missed them) and deletes it once its work, sends it kept
 * included, has ended. While it holds it renews the row's lease every lease / 4 on its own connection, which it holds
 * for that (so no other use of the pool can starve the renewals), or, once that connection's session has ended, on the
 * pool's. A row whose holder's process died, or could reach Postgres on no connection for a whole lease, expires a
 * lease after its last renewal. Times are the server's (now()): the clocks of processes do not matter.
 */
export const BARRIER_LEASE_MS = 120_000;

/** Who holds, as barrier_holders shows it to an operator (with the session, session_pid). */
const HOLDER = `${hostname()}:${process.pid}`;

/**
 * Runs fn as a holder of the barrier `name`, with a pool client of its own that fn's queries may use (its row is
 * committed before fn starts). `keep` holds the barrier past fn's end until a promise settles: work fn started that
 * outlives it (a Kafka send, which kafkajs cannot abort, goes on after its activity was cancelled); the row is then
 * deleted in the background. `fence`: what must be fenced if the holder goes without deleting its row (its process
 * died, or reached Postgres on no connection for a lease): the waiter that finds its row expired calls its `fence`
 * with it before it counts the holder gone (a send may outlive its process in a broker; see awaitBarrierHolders).
 * `held` resolves only while the row is unexpired and unclaimed (asked of Postgres, within BARRIER_SILENCE_MS): what a
 * send checks once nothing can change what a waiter's fence will supersede, before it begins (see the replay
 * producer's guard, shared/kafka.ts). `signal`: a wait for a holder slot that it aborts leaves the queue and rejects.
 */
export async function holdBarrier<T>(
  pool: pg.Pool,
  name: string,
  fn: (client: pg.PoolClient, keep: (until: Promise<unknown>) => void, held: () => Promise<void>) => Promise<T>,
  { leaseMs = BARRIER_LEASE_MS, fence, signal }: { leaseMs?: number; fence?: string; signal?: AbortSignal } = {},
): Promise<T> {
  const leave = await holderSlot(pool, signal);
  let client: pg.PoolClient;
  try {
    client = await pool.connect();
  } catch (err) {
    leave();
    throw err;
  }
  let broken: Error | undefined;
  let released = false;
  let holder: string | undefined;
  let inserted = false;
  const release = () => {
    if (released) return;
    released = true;
    client.release(broken);
  };
  // A session that ended gives its connection back (destroyed) at once, and the lease is renewed on the pool's at once:
  // the send goes on without it.
  const onError = (err: Error) => {
    broken ??= err;
    release();
    if (holder !== undefined) renewHolder(pool, undefined, holder, leaseMs);
  };
  client.on('error', onError);
  const kept: Promise<unknown>[] = [];
  let renewing: NodeJS.Timeout | undefined;
  const end = async () => {
    await Promise.allSettled(kept);
    clearInterval(renewing);
    const deleted =
      holder === undefined ||
      (!released &&
        (await withTimeout(
          client.query('DELETE FROM barrier_holders WHERE id = $1', [holder]),
          BARRIER_SILENCE_MS,
          `Deleting barrier holder ${holder}: Postgres did not answer in ${BARRIER_SILENCE_MS} ms`,
        ).then(
          () => true,
          (err: Error) => ((broken ??= err), false),
        )));
    if (!released) client.off('error', onError); // a destroyed client keeps it: its late errors are not the pool's
    release();
    leave();
    if (!deleted) void dropHolder(pool, holder!, leaseMs, { untilDeleted: !inserted });
  };
  let result: T;
  try {
    // Its id is its own before the insert: an insert without an answer may still commit (a lock on the table let go
    // later), and its row is then deleted by that id (dropHolder) rather than left to hold every waiter for a lease.
    const id = randomUUID();
    holder = id;
    await withTimeout(
      client.query(
        `INSERT INTO barrier_holders (id, name, holder, session_pid, expires_at, fence)
         VALUES ($1, $2, $3, pg_backend_pid(), now() + $4 * interval '1 millisecond', $5)`,
        [id, name, HOLDER, leaseMs, fence ?? null],
      ),
      BARRIER_SILENCE_MS,
      `Holding the barrier ${name}: Postgres did not answer in ${BARRIER_SILENCE_MS} ms`,
    ).catch((err: Error) => {
      // Postgres' own answer refusing it: no row. Anything else (a socket error has a `code` too, ECONNRESET; a silence)
      // may have reached the server, which commits it even after its client left.
      if (err instanceof pg.DatabaseError) holder = undefined;
      broken ??= err; // its connection is not given back for another user: a late answer could reach them
      release();
      throw err;
    });
    inserted = true;
    renewing = setInterval(() => renewHolder(pool, released ? undefined : client, id, leaseMs), leaseMs / 4);
    renewing.unref();
    const held = async () => {
      const ask = (on: pg.PoolClient) =>
        on.query(
          `SELECT 1 FROM barrier_holders WHERE id = $1 AND claimed_at IS NULL AND expires_at > clock_timestamp()`,
          [id],
        );
      const silent = `Checking barrier holder ${id}: Postgres did not answer in ${BARRIER_SILENCE_MS} ms`;
      const { rowCount } = released
        ? await onBoundedClient(pool, BARRIER_SILENCE_MS, silent, ask)
        : await withTimeout(ask(client), BARRIER_SILENCE_MS, silent);
      if (!rowCount) {
        throw new Error(
          `The barrier holder ${id} no longer holds ${name} (its lease ran out, or an erasure claimed it to fence its sends): nothing more is sent under it`,
        );
      }
    };
    result = await fn(client, (until) => kept.push(until), held);
  } catch (err) {
    void end();
    throw err;
  }
  await end();
  return result;
}

/** The holder rows (uuids: unique across databases) whose renewal has not answered yet: one at a time. */
const renewals = new Set<string>();
/** Renews a holder's lease on its own connection (`own`, while its session lives) or on one of the pool's. */
function renewHolder(pool: pg.Pool, own: pg.PoolClient | undefined, id: string, leaseMs: number): void {
  if (renewals.has(id)) return;
  renewals.add(id);
  const renew = (client: pg.PoolClient) =>
    client.query(
      `UPDATE barrier_holders SET expires_at = now() + $2 * interval '1 millisecond'
        WHERE id = $1 AND claimed_at IS NULL`,
      [id, leaseMs],
    );
  const onPool = () => onBoundedClient(pool, BARRIER_SILENCE_MS, `Renewing barrier holder ${id}`, renew);
  // On its own connection first; one that does not answer (gone silent) leaves it to the pool's.
  const renewing = own
    ? withTimeout(renew(own), BARRIER_SILENCE_MS, `Renewing barrier holder ${id}`).catch(onPool)
    : onPool();
  void renewing
    .catch(() => undefined) // tried again at the next tick; the lease outlasts three missed ones
    .finally(() => renewals.delete(id));
}

/**
 * Deletes a holder's row on connections of the pool's, its own session having ended: tried again after 0.25, 0.5, 1,
 * 2, 2 … s for as long as the lease would last (past that the row has expired anyway). `untilDeleted` (its insert got
 * no answer): a delete that finds no row is tried again too, since the insert may still commit after it.
 */
async function dropHolder(
  pool: pg.Pool,
  id: string,
  leaseMs: number,
  { untilDeleted = false }: { untilDeleted?: boolean } = {},
): Promise<void> {
  const until = Date.now() + leaseMs;
  for (let pause = 250; ; pause = Math.min(pause * 2, 2000)) {
    const dropped = await onBoundedClient(pool, BARRIER_SILENCE_MS, `Dropping barrier holder ${id}`, (client) =>
      client.query('DELETE FROM barrier_holders WHERE id = $1', [id]),
    ).then(
      (result) => !untilDeleted || (result.rowCount ?? 0) > 0,
      () => false,
    );
    if (dropped || Date.now() + pause >= until) return;
    await new Promise((resolve) => setTimeout(resolve, pause).unref());
  }
}

/**
 * Holders hold a pool connection as long as their work (a Kafka send, for as long as a frozen broker keeps it), so at
 * most half of a pool's connections go to them: the rest stay for everything else (an erasure's own passes, audits),
 * and the others wait here, in memory, for a turn.
 */
const holderSlots = new WeakMap<pg.Pool, { free: number; waiting: ((given: void) => void)[] }>();
async function holderSlot(pool: pg.Pool, signal?: AbortSignal): Promise<() => void> {
  let slots = holderSlots.get(pool);
  if (!slots) {
    slots = { free: Math.max(1, Math.floor((pool.options.max ?? 10) / 2)), waiting: [] };
    holderSlots.set(pool, slots);
  }
  const own = slots;
  signal?.throwIfAborted();
  if (own.free > 0) own.free--;
  else await queueTurn(own.waiting, signal);
  let left = false;
  return () => {
    if (left) return;
    left = true;
    const next = own.waiting.shift();
    if (next) next();
    else own.free++;
  };
}

/** How often awaitBarrierHolders calls onWait. */
const BARRIER_REPORT_MS = 1000;
/** How long any statement of the barrier may go unanswered before its connection is taken for lost (and destroyed). */
const BARRIER_SILENCE_MS = 5000;
/** How long a waiter's statement waits for its lock on barrier_holders before it gives up (tried again at the next look). */
const BARRIER_LOOK_LOCK_MS = 2000;
/** How often a waiter looks at the rows again (doubling from the first). */
const BARRIER_POLL_FIRST_MS = 25;
const BARRIER_POLL_MAX_MS = 1000;

/**
 * Returns once none of the name's barrier_holders rows unexpired at its call is left unexpired: every holder that
 * began before it has ended its work (or its process has been gone for a lease). Later rows are not waited for, so a
 * stream of holders cannot starve it. With `fence`, a row whose lease ran out with a fence scope (holdBarrier's
 * `fence`: its holder went without deleting it, and its send may still be in a broker) is waited for until
 * fence(scope) has succeeded, whenever it expired, and is then deleted. It calls `onWait` (an activity's heartbeat)
 * every BARRIER_REPORT_MS until it ends or `signal` aborts, rejects with the signal's reason as soon as it aborts, and
 * gives up with an error once `timeoutMs` has passed, or as soon as a look gets no answer within BARRIER_SILENCE_MS
 * (a connection gone silent). A statement kept out by a lock on the table is tried again until `timeoutMs`.
 */
export async function awaitBarrierHolders(
  pool: pg.Pool,
  name: string,
  {
    onWait,
    signal,
    timeoutMs,
    fence,
  }: { onWait?: () => void; signal?: AbortSignal; timeoutMs: number; fence?: (scope: string) => Promise<void> },
): Promise<void> {
  const until = Date.now() + timeoutMs;
  // A cancelled wait reports no more: an activity's heartbeat must not outlive its cancellation.
  const reporting = onWait ? setInterval(() => signal?.aborted || onWait(), BARRIER_REPORT_MS) : undefined;
  // Each statement within the silence bound (so the wait ends at most that long past timeoutMs) or the signal.
  const silent = `The barrier ${name}: Postgres did not answer in ${BARRIER_SILENCE_MS} ms`;
  const bounded = <T>(fn: (client: pg.PoolClient) => Promise<T>) =>
    onBoundedClient(pool, BARRIER_SILENCE_MS, silent, fn, signal);
  // Every statement on barrier_holders waits BARRIER_LOOK_LOCK_MS for its lock, well within the silence bound: a table
  // locked against it (a migration's lock) is not taken for a silent Postgres; refused (55P03), it did nothing and is
  // undefined, tried again at the next look.
  const unlessLocked = async <T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T | undefined> => {
    try {
      return await bounded(async (client) => {
        await client.query('BEGIN');
        await client.query(`SET LOCAL lock_timeout = ${BARRIER_LOOK_LOCK_MS}`);
        const result = await fn(client);
        await client.query('COMMIT');
        return result;
      });
    } catch (err) {
      if ((err as { code?: unknown }).code === LOCK_NOT_AVAILABLE) return undefined;
      throw err;
    }
  };
  // A look at the rows takes the lock writing them takes (ROW EXCLUSIVE): while something keeps holders from
  // renewing (a migration's lock on the table), the rows are not looked at either, so no lease is seen to run out
  // that could not be renewed. Undefined: nothing seen.
  const look = (ids?: string[]) =>
    unlessLocked(async (client) => {
      await client.query('LOCK TABLE barrier_holders IN ROW EXCLUSIVE MODE');
      const { rows } = await client.query<HeldRow>(
        `SELECT id, fence, expires_at > now() AS live FROM barrier_holders
          WHERE name = $1 AND (expires_at > now() OR ($3 AND fence IS NOT NULL))
            AND ($2::uuid[] IS NULL OR id = ANY($2::uuid[]))`,
        [name, ids ?? null, fence !== undefined],
      );
      return rows;
    });
  const failures = new Map<string, string>();
  // The rows of holders that are gone claimed (no renewal revives them, and their holders' guards refuse to send from
  // now on), their scopes fenced, then the rows deleted; a scope whose fence fails stays held (claimed).
  const fenceGone = async (rows: HeldRow[]) => {
    for (const scope of new Set(rows.flatMap((row) => (!row.live && row.fence !== null ? [row.fence] : [])))) {
      // A row renewed since the look is live again (not claimed); one claimed before (a failed fence) stays claimed.
      // Not claimed while the table is locked (undefined): looked at again at the next look.
      const claimed = await unlessLocked((client) =>
        client.query(
          `UPDATE barrier_holders SET claimed_at = coalesce(claimed_at, now())
            WHERE name = $1 AND fence = $2 AND (expires_at <= now() OR claimed_at IS NOT NULL)`,
          [name, scope],
        ),
      );
      if (!claimed?.rowCount) continue;
      try {
        const left = Math.max(BARRIER_REPORT_MS, until - Date.now());
        await raceSignal(withTimeout(fence!(scope), left, `Fencing ${scope}: no answer in ${left} ms`), signal);
        failures.delete(scope);
      } catch (err) {
        signal?.throwIfAborted();
        failures.set(scope, (err as Error).message);
        continue;
      }
      // Left while the table is locked: the claimed row is seen at the next look, fenced again (idempotent), deleted.
      await unlessLocked((client) =>
        client.query(`DELETE FROM barrier_holders WHERE name = $1 AND fence = $2 AND claimed_at IS NOT NULL`, [
          name,
          scope,
        ]),
      );
    }
  };
  try {
    // The rows of holders that died an hour ago and more go first (nothing else deletes them), unless still to fence.
    await unlessLocked((client) =>
      client.query(
        `DELETE FROM barrier_holders WHERE name = $1 AND expires_at < now() - interval '1 hour' AND fence IS NULL`,
        [name],
      ),
    );
    // The holders seen at the last look that saw any (later looks ask after those only); undefined until one has.
    let ids: string[] | undefined;
    let held = await look();
    for (
      let pause = BARRIER_POLL_FIRST_MS;
      held === undefined || held.length > 0;
      pause = Math.min(pause * 2, BARRIER_POLL_MAX_MS)
    ) {
      signal?.throwIfAborted();
      if (held) {
        ids = held.map((row) => row.id);
        await fenceGone(held);
      }
      if (Date.now() >= until) {
        const unfenced = [...failures].map(([scope, message]) => `${scope}: ${message}`);
        const seen = ids ? `${ids.length} still held: barrier_holders ${ids.join(', ')}` : 'none seen';
        const locked = held ? '' : `; barrier_holders was locked against the last look for ${BARRIER_LOOK_LOCK_MS} ms`;
        throw new Error(
          `The holders of ${name} did not let it go within ${timeoutMs} ms (${seen}${locked}${unfenced.length ? `; not fenced: ${unfenced.join('; ')}` : ''})`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(pause, Math.max(0, until - Date.now()))));
      held = await look(ids);
    }
  } finally {
    clearInterval(reporting);
  }
}

interface HeldRow {
  id: string;
  fence: string | null;
  live: boolean;
}

/** Settles as `work` does, or rejects with the signal's reason as soon as it aborts (work goes on, unheard). */
async function raceSignal<T>(work: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return work;
  signal.throwIfAborted();
  work.catch(() => undefined);
  let onAbort = () => {};
  try {
    return await Promise.race([
      work,
      new Promise<never>((_, reject) => {
        onAbort = () => reject(signal.reason);
        signal.addEventListener('abort', onAbort, { once: true });
      }),
    ]);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

/**
 * Runs fn on a pool connection of its own within ms: a connection that does not answer in time fails the call and is
 * destroyed, not given back (a late answer must not reach its next user).
 */
async function onBoundedClient<T>(
  pool: pg.Pool,
  ms: number,
  message: string,
  fn: (client: pg.PoolClient) => Promise<T>,
  signal?: AbortSignal,
): Promise<T> {
  signal?.throwIfAborted();
  let onAbort = () => {};
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal!.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
  aborted.catch(() => undefined); // raced below; unheard when nothing races it any more
  // The wait for a connection of a busy pool races the signal too; one given after the abort goes straight back.
  const connecting = pool.connect();
  let client: pg.PoolClient;
  try {
    client = await Promise.race([connecting, aborted]);
  } catch (err) {
    signal?.removeEventListener('abort', onAbort);
    connecting.then(
      (late) => late.release(),
      () => undefined,
    );
    throw err;
  }
  // A connection lost mid-statement fails the statement and is also emitted: unheard, that would end the process.
  const onError = () => undefined;
  client.on('error', onError);
  try {
    const result = await withTimeout(Promise.race([fn(client), aborted]), ms, message);
    client.off('error', onError);
    client.release();
    return result;
  } catch (err) {
    client.release(err instanceof Error ? err : new Error(String(err)));
    throw err;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

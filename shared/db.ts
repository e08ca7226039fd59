import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import pg from 'pg';
import type { Logger } from './logger';
import { stopWait } from './stop-clock';
import { settleWithin, withTimeout } from './timeout';

// bigint columns (ids, offsets) come back as JS numbers: journal ids stay far below 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number(value));

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;

/** DATABASE_STATEMENT_TIMEOUT's default, also the bound of pools created without a config (tests, tools). */
export const DEFAULT_STATEMENT_TIMEOUT_MS = 30_000;

/**
 * One pool per process. Idle-client errors are logged, never fatal: Postgres may restart under us. Every statement
 * is bounded by Postgres' statement_timeout (lock waits included: a table someone else locked cannot hold a batch
 * forever); a statement cancelled so fails with SQLSTATE 57014, which callers treat as transient. TCP keepalive
 * finds connections whose server went away without a word. `applicationName` tells pools apart in pg_stat_activity
 * (the API's own pool is crm-events-sink-api).
 */
export function createPool(
  databaseUrl: string,
  max: number,
  log: Logger,
  statementTimeoutMs = DEFAULT_STATEMENT_TIMEOUT_MS,
  applicationName = 'crm-events-sink',
): pg.Pool {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max,
    connectionTimeoutMillis: 5000,
    idleTimeoutMillis: 30_000,
    application_name: applicationName,
    statement_timeout: statementTimeoutMs,
    keepAlive: true,
  });
  pool.on('error', (err) => log.warn({ err: err.message }, 'Postgres connection dropped'));
  return pool;
}

/** How long a shutdown waits for the pool's clients to be given back and closed. */
export const POOL_END_TIMEOUT_MS = 5000;

/**
 * Closes the pool within a bound. pool.end() waits until every client is given back, and a query to a server that
 * does not answer (frozen, or a network path that drops packets) never returns: statement_timeout is the server's to
 * enforce. Such a client is left open for the process's exit to close. Nothing is lost or doubled either way: an
 * ingest batch's offsets are committed only after Postgres answered its COMMIT, so its records come again to the next
 * consumer, and should the server still commit the transaction once it wakes, the journal sets the redelivery aside.
 */
export async function endPool(pool: pg.Pool, log: Logger, bound = POOL_END_TIMEOUT_MS): Promise<void> {
  const ms = stopWait(bound);
  const ended = await settleWithin(pool.end(), ms);
  if (ended === 'done') return;
  log.warn(
    { timeout_ms: ms, in_use: pool.totalCount - pool.idleCount, err: ended === 'timeout' ? undefined : ended.message },
    ended === 'timeout'
      ? `Postgres clients still busy ${ms} ms into the stop (a query the server does not answer); left them`
      : 'Could not close the Postgres pool; left it',
  );
}

// SQLSTATE classes that mean the server, not a row: connection exception, insufficient resources, operator
// intervention (shutdown, cancelled statement), system error, transaction rollback (serialization, deadlock).
const OUTAGE_CLASSES = ['08', '53', '57', '58', '40'];
// Errors without a SQLSTATE that come from the connection itself (node-postgres and the socket).
const CONNECTION_MESSAGES =
  /connection|terminat|timeout|timed out|not queryable|socket|ECONN|EPIPE|ENOTFOUND|EAI_AGAIN/i;

/**
 * True when an error means Postgres is not there (pause and retry), false when it is about what was written (a row
 * goes to the DLQ instead). Deliberately narrow: anything that is not clearly an outage is a row's problem, so that
 * no record can make ingestion retry forever.
 */
export function isOutage(err: unknown): boolean {
  const { code, message } = (err ?? {}) as { code?: unknown; message?: unknown };
  if (typeof code === 'string') {
    if (/^E[A-Z]+$/.test(code)) return true; // ECONNREFUSED, ECONNRESET, ETIMEDOUT ...
    return OUTAGE_CLASSES.some((cls) => code.startsWith(cls));
  }
  return typeof message === 'string' && CONNECTION_MESSAGES.test(message);
}

// SQLSTATE classes whose error the same statement raises again on the same data, however often it is retried: a data
// exception (22: a cast, a regular expression, a jsonpath or a division that the data cannot take) and a program limit
// (54: a payload nested deeper than Postgres's stack allows, a statement too complex). Integrity violations (23), a
// rolled-back transaction (40), syntax and undefined objects (42: a schema a rolling upgrade has not migrated yet) and
// the outage classes above may pass on a later attempt.
const DETERMINISTIC_CLASSES = { '22': 'data_exception', '54': 'program_limit_exceeded' } as const;

/** A Postgres error no retry can fix (DETERMINISTIC_CLASSES): its SQLSTATE, its class and Postgres's own message. */
export interface DeterministicPgError {
  sqlstate: string;
  kind: (typeof DETERMINISTIC_CLASSES)[keyof typeof DETERMINISTIC_CLASSES];
  message: string;
}

/**
 * The Postgres error, in err or in its chain of causes, that the same statement would raise again on every attempt
 * (SQLSTATE class 22 or 54), or undefined when there is none and a retry may help. Used by the API (a 422 naming it)
 * and by the worker (a non-retryable activity failure), so that both agree on what retrying cannot fix.
 */
export function deterministicPgError(err: unknown): DeterministicPgError | undefined {
  for (let e = err, depth = 0; e && typeof e === 'object' && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const { code, message } = e as { code?: unknown; message?: unknown };
    if (typeof code !== 'string' || !/^[0-9A-Z]{5}$/.test(code)) continue;
    const kind = DETERMINISTIC_CLASSES[code.slice(0, 2) as keyof typeof DETERMINISTIC_CLASSES];
    if (!kind) return undefined;
    return { sqlstate: code, kind, message: typeof message === 'string' ? message : '' };
  }
  return undefined;
}

/** Runs fn in a transaction that is always rolled back (a trial: what would these writes do?); its result. */
export async function rolledBack<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const trial = { done: false, value: undefined as T };
  try {
    await withTransaction(pool, async (client) => {
      trial.value = await fn(client);
      trial.done = true;
      throw new Error('trial transaction: rolled back');
    });
  } catch (err) {
    if (!trial.done) throw err;
  }
  return trial.value;
}

/** Runs fn in a transaction on one pooled client; rolls back on error. */
export async function withTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  // pg-pool stops listening for a client's errors while it is checked out: a connection dropped by the server (a
  // killed or restarting Postgres) would then be an unhandled 'error' event that ends the process. Here it only
  // marks the client broken; the statement in flight fails on its own and the caller sees an outage.
  const onError = (err: Error) => (broken ??= err);
  client.on('error', onError);
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch((rollbackErr: Error) => (broken = rollbackErr));
    throw err;
  } finally {
    // A client whose connection failed has a dead socket: destroy it instead of returning it to the pool.
    client.off('error', onError);
    client.release(broken);
  }
}

/** The 64-bit advisory lock key of a name (a SHA-256 prefix). */
export function advisoryKey(name: string): bigint {
  return createHash('sha256').update(name).digest().readBigInt64BE(0);
}

/** How often a wait for a session lock asks again. */
const SESSION_LOCK_POLL_MS = 1000;

/**
 * Runs fn holding a session-level advisory lock named by a string, on a client of its own for the whole run: work
 * longer than a transaction should be (an erasure's pass over the archive). Released at the end, or with the
 * connection if the process dies. Waits by asking again every second, on a connection taken from the pool for the
 * try (calling `onWait`, e.g. an activity's heartbeat), until it has the lock or `signal` aborts.
 *
 * The lock goes with its connection (a terminated backend, an idle_session_timeout, a network cut) while fn runs on:
 * fn calls `held()` before each step that must not run beside another holder, which rejects unless the lock is
 * still this session's.
 */
export async function withSessionLock<T>(
  pool: pg.Pool,
  name: string,
  { onWait, signal }: { onWait?: () => void; signal?: AbortSignal },
  fn: (held: () => Promise<void>) => Promise<T>,
): Promise<T> {
  const key = advisoryKey(name).toString();
  // A connection for each try, kept only once it has the lock: many waiting (twenty erasures) must not hold the
  // pool's connections that the holder's own queries need.
  let client: pg.PoolClient;
  for (;;) {
    const trying = await pool.connect();
    const ok = await trying
      .query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1::bigint) AS ok', [key])
      .then(({ rows }) => rows[0].ok)
      .catch((err: Error) => {
        trying.release(err);
        throw err;
      });
    if (ok) {
      client = trying;
      break;
    }
    trying.release();
    signal?.throwIfAborted();
    onWait?.();
    await new Promise((resolve) => setTimeout(resolve, SESSION_LOCK_POLL_MS));
  }
  let broken: Error | undefined;
  const onError = (err: Error) => (broken = err);
  client.on('error', onError);
  try {
    const held = async () => {
      const { rows } = await client.query<{ held: boolean }>(
        `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
            AND objsubid = 1 AND classid::bigint = ($1::bigint >> 32) & 4294967295
            AND objid::bigint = $1::bigint & 4294967295) AS held`,
        [key],
      );
      if (!rows[0].held) throw new Error(`The lock ${name} is no longer held`);
    };
    try {
      return await fn(() =>
        held().catch((err: Error) => {
          throw new Error(`Lost the lock ${name} (its connection ended?): ${err.message}`, { cause: err });
        }),
      );
    } finally {
      await client.query('SELECT pg_advisory_unlock($1::bigint)', [key]).catch((err: Error) => (broken = err));
    }
  } finally {
    client.off('error', onError);
    client.release(broken);
  }
}

/**
 * A barrier's holders are also written down (barrier_holders, sql/020), because the shared lock goes with its session
 * and a holder's session can end while its work goes on (Postgres restarted or failed over, a connection reset): the
 * lock is then gone while the send it guarded is still in flight. A holder commits its row before it takes the lock
 * (so before anything it reads under it) and deletes it in the transaction that lets the lock go, or, when its session
 * has ended, on other connections afterwards. While it holds, it renews the row's lease on a connection of the pool's
 * every lease / 4. A row whose holder's process died (or lost Postgres for a whole lease) expires a lease
 * (BARRIER_LEASE_MS unless the holder says otherwise) after its last renewal. Times are the server's (now()): the
 * clocks of processes do not matter.
 */
export const BARRIER_LEASE_MS = 120_000;

/** Who holds, as barrier_holders shows it to an operator. */
const HOLDER = `${hostname()}:${process.pid}`;

/**
 * Runs fn holding a name's advisory lock SHARED (many holders at once, none while awaitSharedHolders takes it), in a
 * transaction on a pool client of its own that fn's queries may use, its row in barrier_holders committed before.
 * `keep` holds the lock (and the row) past fn's end until a promise settles: work fn started that outlives it (a Kafka
 * send, which kafkajs cannot abort, goes on after its activity was cancelled); the transaction then ends in the
 * background. The wait for the lock is bounded by statement_timeout; the lock goes with the connection if the process
 * dies, the row with its lease.
 */
export async function withSharedLock<T>(
  pool: pg.Pool,
  name: string,
  fn: (client: pg.PoolClient, keep: (until: Promise<unknown>) => void) => Promise<T>,
  { leaseMs = BARRIER_LEASE_MS }: { leaseMs?: number } = {},
): Promise<T> {
  const leave = await sharedHolderSlot(pool);
  let client: pg.PoolClient;
  try {
    client = await pool.connect();
  } catch (err) {
    leave();
    throw err;
  }
  let broken: Error | undefined;
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    client.release(broken);
  };
  // A session that ended took the lock with it: its connection goes back (destroyed) at once, not once the send has
  // ended, so that the row's renewals have a connection (on a pool of one they would wait for the dead one).
  const onError = (err: Error) => {
    broken ??= err;
    release();
  };
  client.on('error', onError);
  const kept: Promise<unknown>[] = [];
  let holder: number | undefined;
  let renewing: NodeJS.Timeout | undefined;
  const end = async () => {
    await Promise.allSettled(kept);
    clearInterval(renewing);
    let [deleted, committed] = [false, false];
    if (!released) {
      // The row goes in the transaction that lets the lock go; a transaction a failed statement aborted keeps it.
      deleted =
        holder === undefined ||
        (await client.query('DELETE FROM barrier_holders WHERE id = $1', [holder]).then(
          () => true,
          () => false,
        ));
      committed = await client.query('COMMIT').then(
        (result) => result.command === 'COMMIT',
        (err: Error) => ((broken ??= err), false),
      );
    }
    if (!released) client.off('error', onError); // a destroyed client keeps it: its late errors are not the pool's
    release();
    leave();
    if (holder !== undefined && !(deleted && committed)) void dropHolder(pool, holder, leaseMs);
  };
  let result: T;
  try {
    const { rows } = await client.query<{ id: number }>(
      `INSERT INTO barrier_holders (name, holder, expires_at)
       VALUES ($1, $2, now() + $3 * interval '1 millisecond') RETURNING id`,
      [name, HOLDER, leaseMs],
    );
    const id = rows[0].id;
    holder = id;
    renewing = setInterval(() => renewHolder(pool, id, leaseMs), leaseMs / 4);
    renewing.unref();
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock_shared($1::bigint)', [advisoryKey(name).toString()]);
    result = await fn(client, (until) => kept.push(until));
  } catch (err) {
    void end();
    throw err;
  }
  await end();
  return result;
}

/** The holder rows whose renewal has not answered yet: one renewal at a time per row. */
const renewals = new Set<number>();
function renewHolder(pool: pg.Pool, id: number, leaseMs: number): void {
  if (renewals.has(id)) return;
  renewals.add(id);
  void onBoundedClient(pool, BARRIER_SILENCE_MS, `Renewing barrier holder ${id}`, (client) =>
    client.query(`UPDATE barrier_holders SET expires_at = now() + $2 * interval '1 millisecond' WHERE id = $1`, [
      id,
      leaseMs,
    ]),
  )
    .catch(() => undefined) // tried again at the next tick; the lease outlasts three missed ones
    .finally(() => renewals.delete(id));
}

/**
 * Deletes a holder's row on connections of the pool's, its own session having ended: tried again after 0.25, 0.5, 1, 2, 2 … s
 * for as long as the lease would last (past that the row has expired anyway).
 */
async function dropHolder(pool: pg.Pool, id: number, leaseMs: number): Promise<void> {
  const until = Date.now() + leaseMs;
  for (let pause = 250; ; pause = Math.min(pause * 2, 2000)) {
    const dropped = await onBoundedClient(pool, BARRIER_SILENCE_MS, `Dropping barrier holder ${id}`, (client) =>
      client.query('DELETE FROM barrier_holders WHERE id = $1', [id]),
    ).then(
      () => true,
      () => false,
    );
    if (dropped || Date.now() + pause >= until) return;
    await new Promise((resolve) => setTimeout(resolve, pause).unref());
  }
}

/**
 * Shared holders hold a pool connection as long as their work (a Kafka send, for as long as a frozen broker keeps it),
 * so at most half of a pool's connections go to them: the rest stay for everything else (an erasure's own passes,
 * audits), and the others wait here, in memory, for a turn.
 */
const sharedSlots = new WeakMap<pg.Pool, { free: number; waiting: (() => void)[] }>();
async function sharedHolderSlot(pool: pg.Pool): Promise<() => void> {
  let slots = sharedSlots.get(pool);
  if (!slots) {
    slots = { free: Math.max(1, Math.floor((pool.options.max ?? 10) / 2)), waiting: [] };
    sharedSlots.set(pool, slots);
  }
  const own = slots;
  if (own.free > 0) own.free--;
  else await new Promise<void>((resolve) => own.waiting.push(resolve));
  let left = false;
  return () => {
    if (left) return;
    left = true;
    const next = own.waiting.shift();
    if (next) next();
    else own.free++;
  };
}

/**
 * How long one try of awaitSharedHolders waits in Postgres (lock_timeout) before it looks at its signal and tries
 * again, and how often it calls onWait meanwhile. A try keeps its place in the lock's queue for its whole length: one
 * given up lets the holders queued behind it in, and short tries could be starved by sends that overlap.
 */
const BARRIER_TRY_MS = 30_000;
const BARRIER_REPORT_MS = 1000;
/**
 * How long past its lock_timeout a try waits for the server's answer before it takes the connection for lost (a
 * network gone silent: nothing passes, nothing closes). It is also the server's idle_in_transaction_session_timeout for
 * the try, so a lock the server grants after this side gave up is not held by a session no one will end; and the
 * bound of every other statement of the barrier (its look at barrier_holders).
 */
const BARRIER_SILENCE_MS = 5000;
/** How often the barrier looks again at holder rows that outlived their sessions (doubling from the first). */
const BARRIER_POLL_FIRST_MS = 25;
const BARRIER_POLL_MAX_MS = 1000;

/**
 * A barrier: returns once every holder of the name's shared lock (withSharedLock) that took it before this call has
 * let it go. First it takes the lock exclusively and lets it go at once: the holders whose sessions live. While it
 * waits, later shared requests queue behind it (Postgres grants no lock that conflicts with a waiting request), so a
 * stream of holders cannot starve it. Then it waits until none of the barrier_holders rows there at its call is left
 * unexpired: the holders whose sessions ended while their work went on (later rows are not waited for, so neither
 * starve it). It calls `onWait` (an activity's heartbeat) every BARRIER_REPORT_MS, honours `signal` between tries of
 * BARRIER_TRY_MS and looks at the rows, and gives up with an error once `timeoutMs` has passed, or as soon as a
 * statement gets no answer at all (BARRIER_SILENCE_MS past its own bound): onWait is then called no more, whatever the
 * connection does.
 */
export async function awaitSharedHolders(
  pool: pg.Pool,
  name: string,
  { onWait, signal, timeoutMs }: { onWait?: () => void; signal?: AbortSignal; timeoutMs: number },
): Promise<void> {
  const key = advisoryKey(name).toString();
  const until = Date.now() + timeoutMs;
  const reporting = onWait ? setInterval(onWait, BARRIER_REPORT_MS) : undefined;
  const silent = `The barrier ${name}: Postgres did not answer in ${BARRIER_SILENCE_MS} ms`;
  const unexpired = (ids?: number[]) =>
    onBoundedClient(pool, BARRIER_SILENCE_MS, silent, async (client) => {
      const { rows } = await client.query<{ id: number }>(
        `SELECT id FROM barrier_holders
          WHERE name = $1 AND expires_at > now() AND ($2::bigint[] IS NULL OR id = ANY($2::bigint[]))`,
        [name, ids ?? null],
      );
      return rows.map((row) => row.id);
    });
  const giveUpAt = (what: string) => {
    signal?.throwIfAborted();
    if (Date.now() >= until) throw new Error(`The shared holders of ${name} ${what} within ${timeoutMs} ms`);
  };
  try {
    // The rows of holders that died an hour ago and more go first (nothing else deletes them).
    await onBoundedClient(pool, BARRIER_SILENCE_MS, silent, (client) =>
      client.query(`DELETE FROM barrier_holders WHERE name = $1 AND expires_at < now() - interval '1 hour'`, [name]),
    );
    let held = await unexpired();
    for (;;) {
      const tryMs = Math.max(1, Math.min(BARRIER_TRY_MS, until - Date.now()));
      if (await barrierTry(pool, name, key, tryMs)) break;
      giveUpAt('did not let it go');
    }
    for (let pause = BARRIER_POLL_FIRST_MS; held.length > 0; pause = Math.min(pause * 2, BARRIER_POLL_MAX_MS)) {
      held = await unexpired(held);
      if (held.length === 0) break;
      giveUpAt(`did not let it go (${held.length} whose sessions ended: barrier_holders ${held.join(', ')})`);
      await new Promise((resolve) => setTimeout(resolve, Math.min(pause, until - Date.now())));
    }
  } finally {
    clearInterval(reporting);
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
): Promise<T> {
  const client = await pool.connect();
  // A connection lost mid-statement fails the statement and is also emitted: unheard, that would end the process.
  const onError = () => undefined;
  client.on('error', onError);
  try {
    const result = await withTimeout(fn(client), ms, message);
    client.off('error', onError);
    client.release();
    return result;
  } catch (err) {
    client.release(err instanceof Error ? err : new Error(String(err)));
    throw err;
  }
}

/** One try of awaitSharedHolders on a connection of its own: whether it got the lock (and let it go) within tryMs. */
async function barrierTry(pool: pg.Pool, name: string, key: string, tryMs: number): Promise<boolean> {
  const silence = tryMs + BARRIER_SILENCE_MS;
  return onBoundedClient(
    pool,
    silence,
    `The barrier ${name}: Postgres did not answer in ${silence} ms`,
    async (client) => {
      await client.query('BEGIN');
      await client.query(`SET LOCAL idle_in_transaction_session_timeout = ${BARRIER_SILENCE_MS}`);
      await client.query(`SET LOCAL lock_timeout = ${tryMs}`);
      // The pool's statement_timeout may be no longer than the try: the try's own bound must come first.
      await client.query(`SET LOCAL statement_timeout = ${silence}`);
      const got = await client.query('SELECT pg_advisory_xact_lock($1::bigint)', [key]).then(
        () => true,
        (err: { code?: string }) => {
          if (err.code === '55P03') return false; // lock_not_available: the try's lock_timeout
          throw err;
        },
      );
      await client.query(got ? 'COMMIT' : 'ROLLBACK');
      return got;
    },
  );
}

/**
 * Takes transaction-scoped advisory locks named by strings (released at COMMIT or ROLLBACK). Each name maps to a
 * 64-bit key (SHA-256 prefix) and keys are taken in ascending order, so two transactions locking overlapping sets
 * never deadlock. A collision only serialises two unrelated names.
 */
export async function lockNames(client: pg.PoolClient, names: Iterable<string>): Promise<void> {
  const keys = [...new Set([...names].map(advisoryKey))];
  keys.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  for (const key of keys) await client.query('SELECT pg_advisory_xact_lock($1::bigint)', [key.toString()]);
}

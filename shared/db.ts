import { createHash, randomUUID } from 'node:crypto';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { createLogger, type Logger } from './logger';
import { stopWait } from './stop-clock';
import { settleWithin } from './timeout';

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
  lockLog ??= log;
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

// SQLSTATE 25P03: the session was ended by idle_in_transaction_session_timeout (withTransaction's idleTimeoutMs).
const IDLE_IN_TRANSACTION_TIMEOUT = '25P03';
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
    if (code === IDLE_IN_TRANSACTION_TIMEOUT) return true; // the server ended the session: nothing about the rows
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
export async function rolledBack<T>(
  pool: pg.Pool,
  fn: (client: pg.PoolClient) => Promise<T>,
  idleTimeoutMs?: number,
): Promise<T> {
  const trial = { done: false, value: undefined as T };
  try {
    await withTransaction(
      pool,
      async (client) => {
        trial.value = await fn(client);
        trial.done = true;
        throw new Error('trial transaction: rolled back');
      },
      idleTimeoutMs,
    );
  } catch (err) {
    if (!trial.done) throw err;
  }
  return trial.value;
}

/**
 * Runs fn in a transaction on one pooled client; rolls back on error. `idleTimeoutMs` has Postgres end the session
 * when the transaction sits idle that long between statements: a process frozen mid-transaction (SIGSTOP, a paused
 * VM) keeps its socket open, so without it the transaction and its locks outlive the process's turn.
 */
export async function withTransaction<T>(
  pool: pg.Pool,
  fn: (client: pg.PoolClient) => Promise<T>,
  idleTimeoutMs?: number,
): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  // pg-pool stops listening for a client's errors while it is checked out: a connection dropped by the server (a
  // killed or restarting Postgres) would then be an unhandled 'error' event that ends the process. Here it only
  // marks the client broken; the statement in flight fails on its own and the caller sees an outage.
  const onError = (err: Error) => (broken ??= err);
  client.on('error', onError);
  try {
    await client.query(
      idleTimeoutMs === undefined
        ? 'BEGIN'
        : `BEGIN; SET LOCAL idle_in_transaction_session_timeout = ${Math.max(1, Math.round(idleTimeoutMs))}`,
    );
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

/** What a statement run in a snapshot shared with others (withOneSnapshot) answers. */
export interface SnapshotReader {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

/**
 * Runs fn with a reader whose statements all see the database as one snapshot, taken now, however long fn takes
 * between them: a transaction of its own exports the snapshot and holds it (no table lock) until fn ends, and each
 * statement runs in a short READ ONLY transaction importing it, so that the tables it reads are locked only while it
 * runs (a transaction reading them throughout would hold their locks as long, and a DETACH queued behind those would
 * hold up every writer).
 */
export async function withOneSnapshot<T>(pool: pg.Pool, fn: (db: SnapshotReader) => Promise<T>): Promise<T> {
  return withTransaction(pool, async (exporter) => {
    await exporter.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY');
    const { rows } = await exporter.query<{ id: string }>('SELECT pg_export_snapshot() AS id');
    const reader: SnapshotReader = {
      query: (text, values) =>
        withTransaction(pool, async (client) => {
          await client.query(
            `SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET TRANSACTION SNAPSHOT '${rows[0].id}'`,
          );
          return client.query(text, values);
        }),
    };
    return fn(reader);
  });
}

/** The 64-bit advisory lock key of a name (a SHA-256 prefix). */
export function advisoryKey(name: string): bigint {
  return createHash('sha256').update(name).digest().readBigInt64BE(0);
}

/**
 * The SQL expression taking the shared, transaction-scoped form of advisory lock `name` (released at COMMIT or
 * ROLLBACK), for a writer to put in a statement of its own: no round trip of its own, and taken before anything the
 * statement does after it (see the caller). The key is a constant of the name, written into the text, so that the
 * statement's text stays the same (one prepared plan). Shared holders never wait for one another, only for a holder
 * of the exclusive form (withExclusiveLock), and it for them.
 */
export function sharedLockSql(name: string): string {
  return `pg_advisory_xact_lock_shared(${advisoryKey(name).toString()}::bigint)`;
}

/**
 * Runs fn in a short transaction of its own holding the exclusive form of advisory lock `name`: every transaction
 * that held its shared form (sharedLockSql) when this one asked has ended, and none takes it until fn has returned.
 * fn's statements come after the lock's, so under READ COMMITTED they see every such transaction's commit. Waits at
 * most `waitMs` (lock_timeout) and then fails with SQLSTATE 55P03 (LOCK_NOT_AVAILABLE). Writers asking for the shared
 * form queue behind this wait (Postgres grants locks in order), so `waitMs` is also how long they may be held up.
 */
export async function withExclusiveLock<T>(
  pool: pg.Pool,
  name: string,
  waitMs: number,
  fn: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  return withTransaction(pool, async (client) => {
    await client.query(
      `SET LOCAL lock_timeout = ${Math.max(1, Math.round(waitMs))}; ` +
        `SELECT pg_advisory_xact_lock(${advisoryKey(name).toString()}::bigint)`,
    );
    return fn(client);
  });
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

/** How long lockNames waits for one lock before it fails, whatever the pool's statement timeout. */
export const LOCK_WAIT_MS = 30_000;

/** How often a process's beat runs its statement (lockNames). */
export const BEAT_INTERVAL_MS = 1000;
/** How long a beat's statement or connect may take before the beat reconnects. */
const BEAT_ANSWER_MS = 5000;
/** The longest pause between two reconnects of a beat. */
const BEAT_MAX_PAUSE_MS = 5000;
/** A step's statement_timeout is the step plus this margin: the lock_timeout must fire first. */
const STEP_STATEMENT_MARGIN_MS = 2000;
/** After the last look ended a holder, one more try of at most this long for the lock it left. */
const LAST_TRY_MS = 2000;

// Who is told when a waiter ends a holder: the first pool's logger, else one of our own.
let lockLog: Logger | undefined;

/**
 * A process's beat on one database path (user, host, port, database): a connection of its own, named
 * crm-events-beat:<tag>, that runs a trivial statement every BEAT_INTERVAL_MS. A lock-holding session of this process
 * on that path carries the same tag in its application_name (lockNames sets it for the transaction). The beat's last
 * query_start in pg_stat_activity is then the proof, on the server, that the holder's process is alive and can reach
 * the server: a process frozen (SIGSTOP, a paused VM) stops beating, a slow but moving writer does not. It runs until
 * the process exits (it never keeps it alive); no pool's end stops it: another pool on the same path (the API's, in
 * `serve`) would take the proof away from a holder still draining (attack44-api-pool-end-stops-ingest-beat).
 */
interface Beat {
  tag: string;
  stopped: boolean;
  client?: pg.Client;
}

const beats = new Map<string, Beat>();

function pathOf(client: pg.ClientBase): string {
  const c = client as unknown as { user?: string; host?: string; port?: number; database?: string };
  return `${c.user ?? ''}@${c.host ?? ''}:${c.port ?? ''}/${c.database ?? ''}`;
}

const unrefPause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());

/** The beat of client's path, started if there is none yet. */
function beatFor(client: pg.ClientBase): Beat {
  const path = pathOf(client);
  let beat = beats.get(path);
  if (!beat) {
    beat = { tag: randomUUID(), stopped: false };
    beats.set(path, beat);
    void runBeat(beat, client as pg.Client);
  }
  return beat;
}

/** Stops every beat of this process (tests, tools). */
export function stopBeats(): void {
  for (const beat of beats.values()) {
    beat.stopped = true;
    closeBeatClient(beat.client);
  }
  beats.clear();
}

function closeBeatClient(client: pg.Client | undefined): void {
  // Not end(): a frozen server would never answer its Terminate. The socket is closed and left to itself.
  (client as unknown as { connection?: { stream?: net.Socket } } | undefined)?.connection?.stream?.destroy();
}

async function runBeat(beat: Beat, like: pg.Client): Promise<void> {
  // The holder's own connection parameters, copied once: the same server, through the same network path.
  const { user, host, port, database, password, ssl } = like as unknown as {
    user?: string;
    host?: string;
    port?: number;
    database?: string;
    password?: string;
    ssl?: pg.ClientConfig['ssl'];
  };
  let failures = 0;
  while (!beat.stopped) {
    const client = new pg.Client({
      user,
      host,
      port,
      database,
      password,
      ssl,
      application_name: `crm-events-beat:${beat.tag}`,
      keepAlive: true,
      // An unref'd socket, and no connectionTimeoutMillis (a ref'd timer): a beat never keeps its process alive. Its
      // connect is bounded by answered() instead.
      stream: () => new net.Socket().unref(),
    });
    client.on('error', () => undefined);
    beat.client = client;
    try {
      await answered(client.connect());
      failures = 0;
      while (!beat.stopped) {
        await answered(client.query('SELECT 1'));
        await unrefPause(BEAT_INTERVAL_MS);
      }
    } catch {
      failures++;
    } finally {
      closeBeatClient(client);
    }
    if (!beat.stopped) await unrefPause(Math.min(BEAT_MAX_PAUSE_MS, 250 * 2 ** failures));
  }
}

/** The promise's outcome, or a rejection once BEAT_ANSWER_MS passed (an unref'd timer). */
function answered<T>(promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('beat: no answer')), BEAT_ANSWER_MS).unref();
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

// An application_name is at most 63 bytes: the client's own name is cut to leave room for ':' and the tag.
function taggedName(client: pg.ClientBase, tag: string): string {
  const own = (client as unknown as { connectionParameters?: { application_name?: string } }).connectionParameters
    ?.application_name;
  const room = 63 - tag.length - 1;
  let name = own ?? 'crm-events';
  while (Buffer.byteLength(name) > room) name = name.slice(0, -1);
  return `${name}:${tag}`;
}

/**
 * Takes transaction-scoped advisory locks named by strings (released at COMMIT or ROLLBACK). Each name maps to a
 * 64-bit key (SHA-256 prefix) and keys are taken in ascending order, so two transactions locking overlapping sets
 * never deadlock. A collision only serialises two unrelated names. A lock another transaction holds is waited for,
 * up to LOCK_WAIT_MS (monotonic clock), then the call fails.
 *
 * A holder must prove its process is alive. The first call on a database path starts this process's beat there (a
 * connection of its own that runs a trivial statement every BEAT_INTERVAL_MS, application_name
 * crm-events-beat:<tag>), and every call sets the session's application_name to `<name>:<tag>` for the transaction.
 *
 * The wait goes in steps of `stuckMs`, and after each step it looks at the holders waiting inside a statement on
 * their own client (ClientRead: a COPY or a Bind whose data has not all come; ClientWrite: a result nobody reads). A
 * process frozen (SIGSTOP, a paused VM) inside a statement keeps its socket, and Postgres neither cancels a statement
 * waiting on its client nor counts it idle, so its transaction would keep the lock until the process is killed. A
 * live writer on a slow link waits there too, with no progress to see while one message arrives. So the server's
 * view of the holder cannot tell them apart; its process's beat can. A tagged holder is ended when its beat's last
 * statement started more than `stuckMs` ago (one look is enough: the beat's age is the evidence of time). A holder
 * whose tag has no beat session, or with no tag (an older version), is ended when two looks at least `stuckMs`
 * apart saw it in the same statement (query_start) with no COPY progress (pg_stat_progress_copy). A frozen process
 * is so ended at the first look more than `stuckMs` after it froze: within two steps, 2 x BATCH_IDLE_TIMEOUT_MS for
 * ingest. The last, shortened step also looks; should it end a holder, one more short try follows. Each ended holder
 * is logged at warn (pid, application_name, reason).
 *
 * Each step's statement sets its own statement_timeout (the step plus a margin), so that a pool's shorter statement
 * timeout cannot cancel the wait before its look; both timeouts go back to what the transaction had once the lock is
 * taken.
 *
 * Ending another session (pg_terminate_backend) is allowed to a role for its own role's sessions, or with
 * pg_signal_backend: the ingest processes must connect as the same role, or a stuck holder of another role is only
 * waited for (pg_stat_activity hides its statement and wait from this role, so it is never even seen as stuck).
 */
export async function lockNames(
  client: pg.PoolClient,
  names: Iterable<string>,
  stuckMs: number,
  log?: Logger,
): Promise<void> {
  const keys = [...new Set([...names].map(advisoryKey))];
  if (!keys.length) return;
  keys.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  // The tag goes with the first try, in the same statement (no round trip of its own); LOCAL: for this transaction,
  // as long as its locks.
  const name = taggedName(client, beatFor(client).tag);
  for (const [i, key] of keys.entries()) {
    const { rows } = await client.query<{ locked: boolean }>(
      i === 0
        ? "SELECT set_config('application_name', $2, true) AS tagged, pg_try_advisory_xact_lock($1::bigint) AS locked"
        : 'SELECT pg_try_advisory_xact_lock($1::bigint) AS locked',
      i === 0 ? [key.toString(), name] : [key.toString()],
    );
    if (!rows[0].locked) await waitForLock(client, key, stuckMs, log);
  }
}

/**
 * What a look saw of a holder waiting on its client, by pid: its statement's start, the wait, its COPY's progress
 * (`look`), and when the look had answered (`at`, this process's monotonic clock).
 */
type HolderLooks = Map<number, { look: string; at: number }>;

/** Waits for advisory lock `key` in steps of `stuckMs` (lock_timeout, in a savepoint), ending stuck holders between. */
async function waitForLock(client: pg.PoolClient, key: bigint, stuckMs: number, log?: Logger): Promise<void> {
  const started = performance.now();
  let looks: HolderLooks = new Map();
  let lastTry = false;
  // What the transaction had before the steps' own timeouts: given back once the lock is taken.
  const { rows: before } = await client.query<{ lock: string; statement: string }>(
    "SELECT current_setting('lock_timeout') AS lock, current_setting('statement_timeout') AS statement",
  );
  for (;;) {
    const left = LOCK_WAIT_MS - (performance.now() - started);
    const step = Math.max(1, Math.round(lastTry ? Math.min(stuckMs, LAST_TRY_MS) : Math.min(stuckMs, left)));
    // Both timeouts are undone by the rollback to the savepoint, or given back once the lock is taken.
    await client.query(
      `SAVEPOINT lock_wait; SET LOCAL lock_timeout = ${step}; ` +
        `SET LOCAL statement_timeout = ${step + STEP_STATEMENT_MARGIN_MS}`,
    );
    try {
      await client.query('SELECT pg_advisory_xact_lock($1::bigint)', [key.toString()]);
    } catch (err) {
      if ((err as { code?: unknown }).code !== LOCK_NOT_AVAILABLE) throw err;
      await client.query('ROLLBACK TO SAVEPOINT lock_wait; RELEASE SAVEPOINT lock_wait');
      if (lastTry) throw new Error(`Another transaction held advisory lock ${key} for ${LOCK_WAIT_MS} ms`);
      const look = await endStuckHolders(client, key, stuckMs, looks, log ?? (lockLog ??= createLogger('info', 'db')));
      looks = look.looks;
      if (performance.now() - started >= LOCK_WAIT_MS) {
        if (!look.ended) throw new Error(`Another transaction held advisory lock ${key} for ${LOCK_WAIT_MS} ms`);
        lastTry = true;
      }
      continue;
    }
    await client.query('RELEASE SAVEPOINT lock_wait');
    await client.query("SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $2, true)", [
      before[0].lock,
      before[0].statement,
    ]);
    return;
  }
}

/** SQLSTATE 55P03: a lock wait ran past lock_timeout. */
export const LOCK_NOT_AVAILABLE = '55P03';

/**
 * Looks at the sessions holding advisory lock `key` that wait on their client inside a statement, and ends those
 * whose process's beat is older than `stuckMs`, or, without a beat, those a look at least `stuckMs` earlier (in
 * `previous`) saw the same: same statement, same wait, no COPY progress. Returns this look, for the next, and how
 * many it ended.
 */
async function endStuckHolders(
  client: pg.PoolClient,
  key: bigint,
  stuckMs: number,
  previous: HolderLooks,
  log: Logger,
): Promise<{ looks: HolderLooks; ended: number }> {
  const sent = performance.now();
  // Only looks that answered at least a step before this one is sent: the server's looks are then that far apart.
  const comparable = Object.fromEntries(
    [...previous].filter(([, { at }]) => sent - at >= stuckMs).map(([pid, { look }]) => [pid, look]),
  );
  // pg_stat_activity and the progress views are read from a snapshot taken once per transaction (this runs inside
  // the waiter's), except wait_event, read live: without clearing it, a later look would see the first look's
  // progress and statement beside the wait of now.
  await client.query('SELECT pg_stat_clear_snapshot()');
  // pg_locks shows a bigint advisory key as its high half (classid) and low half (objid), objsubid 1. CASE, not AND:
  // only CASE promises the terminate is not evaluated for a holder that does not qualify. A beat's age is measured
  // by the server's clock_timestamp() against its last query_start (its connect, if it has run none).
  const { rows } = await client.query<{
    pid: number;
    app: string;
    look: string;
    beat_ms: number | null;
    ended: boolean;
  }>(
    `SELECT pid, app, look, beat_ms,
            CASE WHEN beat_ms IS NOT NULL
                 THEN (CASE WHEN beat_ms > $3::float8 THEN pg_terminate_backend(pid) ELSE false END)
                 WHEN look = $2::jsonb ->> pid::text THEN pg_terminate_backend(pid)
                 ELSE false END AS ended
       FROM (SELECT a.pid, a.application_name AS app,
                    concat_ws(' ', a.query_start, a.wait_event, coalesce(p.bytes_processed, -1),
                              coalesce(p.tuples_processed, -1)) AS look,
                    (SELECT extract(epoch FROM clock_timestamp() - max(coalesce(b.query_start, b.backend_start)))
                            * 1000
                       FROM pg_stat_activity b
                      WHERE b.application_name
                            = 'crm-events-beat:' || substring(a.application_name FROM ':([0-9a-f-]{36})$')
                    )::float8 AS beat_ms
               FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
               LEFT JOIN pg_stat_progress_copy p ON p.pid = a.pid
              WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                AND l.classid::bigint = ($1::bigint >> 32) & 4294967295 AND l.objid::bigint = $1::bigint & 4294967295
                AND a.pid <> pg_backend_pid() AND a.state = 'active'
                AND a.wait_event IN ('ClientRead', 'ClientWrite')) holders`,
    [key.toString(), JSON.stringify(comparable), stuckMs],
  );
  const at = performance.now();
  for (const r of rows.filter((row) => row.ended)) {
    log.warn(
      {
        pid: r.pid,
        application_name: r.app,
        lock_key: key.toString(),
        reason:
          r.beat_ms !== null
            ? `waiting on its client in a statement; its process's beat last ran ${Math.round(r.beat_ms)} ms ago ` +
              `(more than ${stuckMs} ms)`
            : `no beat; waiting on its client in the same statement, without progress, at two looks ` +
              `${stuckMs} ms apart`,
      },
      'Ended a stuck holder of an advisory lock',
    );
  }
  return {
    looks: new Map(rows.filter((r) => !r.ended).map((r) => [r.pid, { look: r.look, at }])),
    ended: rows.filter((r) => r.ended).length,
  };
}

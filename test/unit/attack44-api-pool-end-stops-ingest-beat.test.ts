import pg from 'pg';
import { createLogger } from '../../shared/logger';
import { createPool, endPool, lockNames, stopBeats, type PoolClient } from '../../shared/db';

/**
 * attack44 — Invariant (c) a live writer making progress is never ended (and (b)'s premise: a tagged holder's
 * process proves itself alive by its beat for as long as it holds locks).
 *
 * Attack: `serve` runs ingest and the API in one process (cli/commands/serve.ts). Both pools come from the same
 * DATABASE_URL (cli/runtime.ts rt.pool for ingest; cli/commands/api.ts its own pool, application_name
 * crm-events-sink-api): the same database path (user, host, port, database), so the process has ONE beat for both.
 * On stop, the API is stopped first (serve.ts: `intake.unshift({ name: 'api', ... })`), and its stop calls
 * endPool(apiPool), which calls stopBeat(new pg.Client(pool.options)): the beat of the PATH, i.e. ingest's beat,
 * while ingest is still draining its last batch holding partition locks (its session tagged `<name>:<tag>`).
 * From then on the holder's tag has no beat session on the server: a waiter (the partitions' next owner) sees
 * beat_ms NULL and falls back to the two-look rule, which ends a live writer on a slow link (attack42's
 * slow-link COPY / DLQ insert findings, the very thing the beat was added to fix). The API pool never calls
 * lockNames; ending it should not touch a beat another pool of the process still needs.
 *
 * Reproduction (fakes, no Postgres): two pools from one URL; a fake ingest client (same path) takes a lock with
 * lockNames, which starts the beat (pg.Client connect/query faked); the beat runs SELECT 1 every second. Then
 * endPool(apiPool). Watch the beat of ingest's tag for 2.5 s.
 * With a real stack: `serve` with ingest+api, a batch held in a slow COPY (tc netem on the Postgres link), SIGTERM;
 * in pg_stat_activity the crm-events-beat:<tag> session disappears at the API's stop while the ingest session
 * crm-events-sink:<tag> still holds its advisory locks.
 *
 * Observed: after endPool(apiPool) the beat of ingest's tag runs no statement anymore (its socket destroyed), while
 * ingest's pool and its tagged holder are alive.
 * Expected: the beat keeps running until the last pool of the path that uses it ends (or the process exits).
 *
 * Suspected cause: shared/db.ts:57 `stopBeat(new pg.Client(pool.options))` stops the beat by path, with no count of
 * the pools (or holders) that use it; shared/db.ts:300-307.
 *
 * Fixed: no pool's end stops a beat; it runs until the process exits (unref'd, it never keeps the process alive).
 */
const URL = 'postgres://crm:secret@db.example:5432/crm';

afterEach(() => {
  stopBeats();
  jest.restoreAllMocks();
});

it("ending the API's pool leaves the ingest pool's beat running", async () => {
  const beatQueries: { app: string; at: number }[] = [];
  jest.spyOn(pg.Client.prototype, 'connect').mockImplementation(async function () {
    return undefined;
  } as never);
  jest.spyOn(pg.Client.prototype, 'query').mockImplementation(async function (this: pg.Client) {
    const app = (this as unknown as { connectionParameters: { application_name?: string } }).connectionParameters
      .application_name;
    const stream = (this as unknown as { connection?: { stream?: { destroyed?: boolean } } }).connection?.stream;
    if (stream?.destroyed) throw new Error('Connection terminated');
    beatQueries.push({ app: app ?? '', at: Date.now() });
    return { rows: [{ '?column?': 1 }] };
  } as never);

  const log = createLogger('silent');
  const ingestPool = createPool(URL, 2, log);
  const apiPool = createPool(URL, 2, log, 30_000, 'crm-events-sink-api');

  // A client of the ingest pool as pg gives it: its connection parameters, and a query that grants the lock.
  const parsed = new pg.Client({ connectionString: URL, application_name: 'crm-events-sink' });
  let holderName = '';
  const holder = {
    user: parsed.user,
    host: parsed.host,
    port: parsed.port,
    database: parsed.database,
    password: 'secret',
    ssl: false,
    connectionParameters: { application_name: 'crm-events-sink' },
    query: async (_text: string, params?: unknown[]) => {
      if (params && params.length > 1) holderName = String(params[1]);
      return { rows: [{ locked: true, tagged: holderName }] };
    },
  } as unknown as PoolClient;

  await lockNames(holder, ['journal:t/0'], 10_000);
  const tag = holderName.split(':').pop()!;
  expect(tag).toMatch(/^[0-9a-f-]{36}$/);
  // The beat of ingest's tag runs.
  await new Promise((resolve) => setTimeout(resolve, 1500));
  expect(beatQueries.filter((q) => q.app === `crm-events-beat:${tag}`).length).toBeGreaterThan(0);

  // The API stops first (serve.ts); ingest's pool and its holder go on.
  await endPool(apiPool, log, 500);
  const stoppedAt = Date.now();
  await new Promise((resolve) => setTimeout(resolve, 2500));
  const after = beatQueries.filter((q) => q.app === `crm-events-beat:${tag}` && q.at > stoppedAt);
  // The holder (still in its transaction, tagged with `tag`) must keep its proof of life.
  expect(after.length).toBeGreaterThan(0);

  await endPool(ingestPool, log, 500);
});

import { PassThrough } from 'node:stream';
import { from as copyFrom } from 'pg-copy-streams';
import pino from 'pino';
import { createPool, lockNames, type Pool, type PoolClient } from '../../shared/db';
import { createLogger } from '../../shared/logger';
import { createTestDatabase, ownSession, viaProxy } from '../support/database';
import { baseConfig } from '../support/env';
import { freezableProxy } from '../support/freezable-proxy';

/**
 * lockNames' beat (shared/db.ts; docs/integrity.md, "Ingest"): a session holding locks carries its process's tag in
 * its application_name for its transaction, beside a beat session crm-events-beat:<tag> on the same path; a holder
 * frozen inside a statement with its whole process (its beat frozen too) is ended at the first look once the beat is
 * older than a step, and the ending is logged with the holder's pid, application_name and the reason.
 */
jest.setTimeout(60_000);

const STUCK_MS = 2000;
const NAME = 'journal:beat.leads/0';
const TAG = /^[0-9a-f-]{36}$/;
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let direct: Pool;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

beforeAll(async () => {
  db = await createTestDatabase(baseConfig().databaseUrl, 'lock_beat');
  direct = createPool(db.databaseUrl, 2, createLogger('silent'), 60_000);
});
afterAll(async () => {
  await direct?.end();
  await db?.drop();
});

async function appOf(pid: number): Promise<string | undefined> {
  const { rows } = await direct.query<{ app: string }>(
    'SELECT application_name AS app FROM pg_stat_activity WHERE pid = $1',
    [pid],
  );
  return rows[0]?.app;
}

it('a holder is tagged for its transaction, beside a beat session of its process with the same tag', async () => {
  const { client: holder, pid } = await ownSession(db.databaseUrl, 'beat-holder');
  try {
    await holder.query('BEGIN');
    await lockNames(holder as unknown as PoolClient, [NAME], STUCK_MS);
    const [name, tag] = (await appOf(pid))!.split(':');
    expect({ name, tag }).toEqual({ name: 'beat-holder', tag: expect.stringMatching(TAG) });
    let beats: Array<{ age_ms: number }> = [];
    for (const since = Date.now(); !beats.length && Date.now() - since < 5000; await sleep(50)) {
      ({ rows: beats } = await direct.query<{ age_ms: number }>(
        `SELECT (extract(epoch FROM clock_timestamp() - query_start) * 1000)::float8 AS age_ms
           FROM pg_stat_activity WHERE application_name = $1 AND query_start IS NOT NULL`,
        [`crm-events-beat:${tag}`],
      ));
    }
    await sleep(1500);
    ({ rows: beats } = await direct.query<{ age_ms: number }>(
      `SELECT (extract(epoch FROM clock_timestamp() - query_start) * 1000)::float8 AS age_ms
         FROM pg_stat_activity WHERE application_name = $1`,
      [`crm-events-beat:${tag}`],
    ));
    expect(beats).toHaveLength(1);
    expect(beats[0].age_ms).toBeLessThan(1500); // it beats every second
    await holder.query('COMMIT');
    expect(await appOf(pid)).toBe('beat-holder');
  } finally {
    await holder.end().catch(() => undefined);
  }
});

it('a holder frozen in its COPY with its process (beat frozen too) is ended at one look, and the ending is logged', async () => {
  const proxy = await freezableProxy('127.0.0.1', Number(new URL(db.databaseUrl).port));
  const url = viaProxy(db.databaseUrl, proxy.port);
  const { client: holder, pid } = await ownSession(url, 'beat-frozen');
  const { client: waiter } = await ownSession(db.databaseUrl, 'beat-waiter');
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'warn' }, { write: (line: string) => lines.push(JSON.parse(line)) });
  const data = new PassThrough();
  try {
    await holder.query('BEGIN');
    await lockNames(holder as unknown as PoolClient, [NAME], STUCK_MS);
    const tagged = await appOf(pid);
    await holder.query('CREATE TEMP TABLE beat_rows (n int)');
    const copy = holder.query(copyFrom('COPY beat_rows FROM STDIN'));
    copy.on('error', () => undefined);
    data.pipe(copy);
    await sleep(1000); // the beat has run at least once through the proxy
    proxy.freeze();
    await sleep(STUCK_MS + 500); // the beat is now older than a step
    const t0 = performance.now();
    await waiter.query('BEGIN');
    await lockNames(waiter as unknown as PoolClient, [NAME], STUCK_MS, log);
    const tookMs = performance.now() - t0;
    await waiter.query('COMMIT');
    const ended = lines.filter((l) => l.msg === 'Ended a stuck holder of an advisory lock');
    console.log(JSON.stringify({ tookMs: Math.round(tookMs), ended }));
    // One look: the first, a step into the wait, ends it (the two-look rule would need two steps).
    expect(tookMs).toBeLessThan(2 * STUCK_MS);
    expect(ended).toEqual([
      expect.objectContaining({
        level: 40,
        pid,
        application_name: tagged,
        reason: expect.stringMatching(/beat last ran \d+ ms ago/),
      }),
    ]);
    expect(tagged).toMatch(/^beat-frozen:[0-9a-f-]{36}$/);
  } finally {
    await direct.query('SELECT pg_terminate_backend($1)', [pid]);
    data.destroy();
    proxy.thaw();
    await proxy.close();
    await holder.end().catch(() => undefined);
    await waiter.end().catch(() => undefined);
  }
});

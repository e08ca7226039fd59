import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import pg from 'pg';
import { uniqueSuffix } from '../support/env';
import { exited, spawnIngest } from '../support/ingest-process';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';

/**
 * Invariant 5: a graceful stop ends within SHUTDOWN_TIMEOUT even when a batch is stuck in Postgres (it used to log
 * "Shutting down" and then nothing until a second signal), and loses nothing: the stuck batch was never committed to
 * Kafka, so the next process journals it, once. Every wait of the stop has a bound cut by the stop's clock
 * (shared/stop-clock.ts), so the stuck batch's client is left and the process exits 0, saying so; a stopper with a
 * wait that has no bound runs into the deadline, and the process exits 1 naming it and what was still open.
 */
let h: SinkHarness;
let env: Record<string, string>;
let child: ChildProcess | undefined;
let locker: pg.Client | undefined;

beforeAll(async () => {
  h = await createSinkHarness('shutdown');
  env = {
    LOG_LEVEL: 'info',
    DATABASE_URL: h.config.databaseUrl,
    KAFKA_TOPICS: h.config.kafka.topics.join(','),
    KAFKA_GROUP_ID: h.config.kafka.groupId,
    SHUTDOWN_TIMEOUT: '3s',
    DATABASE_STATEMENT_TIMEOUT: '5m', // the lock, not the statement timeout, decides here
  };
});
afterAll(async () => {
  child?.kill('SIGKILL');
  await locker?.end().catch(() => undefined);
  await h?.close();
});

interface LogLine {
  level: string;
  msg: string;
  stopping?: string;
  open?: string[];
}

function start(extra: Record<string, string> = {}): { child: ChildProcess; lines: () => LogLine[] } {
  const c = spawnIngest({ ...env, ...extra });
  let stdout = '';
  c.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  const lines = () =>
    stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as LogLine);
  return { child: c, lines };
}

const journaled = async (ref: string) =>
  (await h.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM event_journal WHERE payload->>'ref' = $1", [ref]))
    .rows[0].n;

it('SIGTERM with a batch stuck on a lock: exits 0 within SHUTDOWN_TIMEOUT, leaving the stuck client; the record is journaled once on restart', async () => {
  const first = start();
  child = first.child;
  await eventually(async () => first.lines().some((l) => l.msg.startsWith('CRM Events Sink started')), 'ingest up');

  locker = new pg.Client({ connectionString: h.config.databaseUrl });
  await locker.connect();
  await locker.query('BEGIN');
  await locker.query('LOCK TABLE event_journal IN ACCESS EXCLUSIVE MODE');
  const ref = `stuck-${uniqueSuffix()}`;
  await h.send(h.topics.leads, [{ tenant_id: 'acme', ref }], { partition: 0 });
  // The batch is in Postgres, waiting for the lock.
  await eventually(
    async () =>
      (
        await h.pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE datname = current_database() AND wait_event_type = 'Lock'
              AND (application_name = 'crm-events-sink' OR application_name LIKE 'crm-events-sink:%')`,
        )
      ).rows[0].n > 0,
    'a batch waiting for the lock',
  );

  const signalled = Date.now();
  child.kill('SIGTERM');
  const code = await exited(child);
  const took = Date.now() - signalled;
  child = undefined;

  expect({ code, withinShutdownTimeout: took < 3000 }).toEqual({ code: 0, withinShutdownTimeout: true });
  const messages = first.lines().map((l) => l.msg);
  expect(messages).toEqual(expect.arrayContaining([expect.stringMatching(/^Postgres clients still busy \d+ ms into/)]));
  expect(messages.filter((m) => m.startsWith('Shutdown did not finish'))).toEqual([]);

  await locker.query('ROLLBACK');
  expect(await journaled(ref)).toBe(0);

  // A normal stop of a consumer that has just joined its group can take longer than 3 s: the default here.
  const second = start({ SHUTDOWN_TIMEOUT: '30s' });
  child = second.child;
  await eventually(async () => (await journaled(ref)) === 1, 'the stuck record journaled after restart', 60_000);
  child.kill('SIGTERM');
  const secondCode = await exited(child);
  child = undefined;
  expect(second.lines().filter((l) => l.level === 'error' || l.level === 'fatal')).toEqual([]);
  expect(secondCode).toBe(0);
  expect(await journaled(ref)).toBe(1);
  expect(second.lines().some((l) => l.msg.startsWith('Shutdown did not finish'))).toBe(false);
}, 120_000);

it('a stopper that never returns: exits 1 at SHUTDOWN_TIMEOUT, naming it, the stoppers not started and what was open', async () => {
  // The backstop, in a real process: untilShutdown (dist/cli/runtime.js) with a stopper whose wait has no bound.
  const script = `
    const { untilShutdown } = require('./dist/cli/runtime.js');
    const { createLogger } = require('./dist/shared/logger.js');
    const log = createLogger('info', 'backstop');
    const stuck = { name: 'stuck', stop: () => new Promise(() => {}) };
    const after = { name: 'after', stop: async () => {} };
    require('node:net').createServer().listen(0, '127.0.0.1'); // something open, as a service would have
    void untilShutdown(log, [stuck, after], 1500);
    log.info('ready');
  `;
  const c = spawn(process.execPath, ['-e', script], {
    cwd: path.resolve(__dirname, '../..'),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child = c;
  let stdout = '';
  c.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  await eventually(async () => stdout.includes('"msg":"ready"'), 'the script ready', 20_000);
  const signalled = Date.now();
  c.kill('SIGTERM');
  const code = await exited(c);
  const took = Date.now() - signalled;
  child = undefined;
  const lines = stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogLine & { not_started?: string[] });
  const timedOut = lines.find((l) => l.msg.startsWith('Shutdown did not finish within 1500 ms'));
  expect({ code, took: took >= 1400 && took < 4000 }).toEqual({ code: 1, took: true });
  expect(timedOut).toMatchObject({ level: 'error', stopping: 'stuck', not_started: ['after'] });
  expect(timedOut!.msg).toContain('stuck was still stopping');
  expect(timedOut!.open).toEqual(expect.arrayContaining(['TCPServerWrap']));
});

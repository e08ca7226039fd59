import type { ChildProcess } from 'node:child_process';
import pg from 'pg';
import { uniqueSuffix } from '../support/env';
import { exited, spawnIngest } from '../support/ingest-process';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';

/**
 * Invariant 5: a graceful stop ends within SHUTDOWN_TIMEOUT even when a batch is stuck in Postgres (it used to log
 * "Shutting down" and then nothing until a second signal), exits non-zero naming what was still open, and loses
 * nothing: the stuck batch was never committed to Kafka, so the next process journals it, once.
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

it('SIGTERM with a batch stuck on a lock: exits non-zero within SHUTDOWN_TIMEOUT naming what was open; the record is journaled once on restart', async () => {
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
            WHERE datname = current_database() AND application_name = 'crm-events-sink' AND wait_event_type = 'Lock'`,
        )
      ).rows[0].n > 0,
    'a batch waiting for the lock',
  );

  const signalled = Date.now();
  child.kill('SIGTERM');
  const code = await exited(child);
  const took = Date.now() - signalled;
  child = undefined;

  expect(code).not.toBe(0);
  expect(code).not.toBeNull();
  expect(took).toBeLessThan(3000 + 2000);
  expect(took).toBeGreaterThanOrEqual(2900);
  const timedOut = first.lines().find((l) => l.msg.startsWith('Shutdown did not finish within 3000 ms'));
  expect(timedOut).toMatchObject({ level: 'error', stopping: expect.any(String) });
  expect(timedOut!.msg).toContain(`${timedOut!.stopping} was still stopping`);
  expect(timedOut!.open).toEqual(expect.arrayContaining(['TCPSocketWrap'])); // the Postgres and Kafka sockets

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

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { asyncLocalStorage, type Context } from '@temporalio/activity';
import type { ActivityOptions } from '@temporalio/workflow';
import type { Pool } from 'pg';
import { createErasureActivities } from '../../activities/erasure';
import type { ActivityDeps } from '../../activities/deps';
import { createMaintenanceActivities } from '../../activities/maintenance';
import { maintenanceOptions } from '../../workflows/activity-options';
import { fakeActivityServer } from '../support/fake-temporal-attempts';

/**
 * attack46 against f583c4b (worker/heartbeat-keepalive.ts: every activity with a heartbeat timeout is heartbeaten
 * again every min(5 s, timeout / 3) for as long as it runs).
 *
 * Invariant: an erasure (a maintenance step) is never stuck on a hung attempt for longer than its heartbeat timeout: "an activity that makes
 * no progress stops heartbeating, so Temporal's heartbeat timeout retries it" (attack33; workflows/erasure.ts
 * passOptions: heartbeat timeout 1 min, "the start-to-close timeout only bounds one attempt", 6 h). The keepalive's
 * own doc: "The heartbeat timeout still finds a dead or frozen worker" — the wait it was written for is a wait this
 * process will finish, not a statement on a connection that went silent.
 *
 * Attack: the real eraseRows activity (createErasureActivities) under the fake server with workflows/erasure.ts's pass
 * options (read from the source), through the worker's interceptor list. Attempt 1's first window DELETE goes to a
 * Postgres connection that has gone silent (a frozen proxy or network path, attack33's fault: node-postgres has no
 * client-side query timeout, statement_timeout is the server's, so the query never settles); every later attempt's
 * statements are answered at once. The activity heartbeats nothing while the statement hangs.
 *
 * Same with the maintenance options (heartbeat timeout 2 min, start-to-close 2 h, "long reads and writes that heartbeat
 * every few thousand rows"): expireDeadLetters' first statement unanswered in attempt 1.
 *
 * Observed: 15 min in, attempt 1 is still live for the server (heartbeaten every 5 s by the keepalive: ~180 beats,
 * all of the previous details), no retry has started, the erasure has not deleted a row; it stays so until the 6 h
 * start-to-close timeout. Maintenance: 30 min in, attempt 1 still live (360 heartbeats), until 2 h. Expected (before
 * f583c4b, and as the design says): attempt 1 timed out by its heartbeat after 1 min (2 min), attempt 2 erases the
 * rows (deletes the dead letters) and completes a minute or two in. Both pass with the keepalive out of the list.
 *
 * Suspected cause: worker/heartbeat-keepalive.ts:29-32 heartbeats on a timer of its own whatever the activity is doing
 * (the attack33 pattern, 5811654, moved from the barrier wait to every activity): liveness of the process is reported
 * as progress of the attempt. Same for maintenance (2 min → 2 h) and page activities' reads (30 s → 10 min).
 *
 * Fixed: 2f176f1 (found against f583c4b, whose keepalive covered whole activities): the keepalive runs only around a
 * page's send under the erasures' barrier (shared/kafka.ts keepingAttemptAlive in withErasuresChecked); erasure passes
 * and maintenance steps keep their heartbeat timeouts. Passes on 2f176f1, failed on f583c4b.
 */

/** workflows/erasure.ts passOptions, read from the source (the workflow module cannot be imported outside a workflow). */
function erasurePassOptions(): ActivityOptions {
  const source = readFileSync(join(__dirname, '../../workflows/erasure.ts'), 'utf8');
  const block = /const passOptions: ActivityOptions = \{([\s\S]*?)\n\};/.exec(source)![1];
  const field = (name: string) => new RegExp(`${name}: '([^']+)'`).exec(block)![1];
  return {
    startToCloseTimeout: field('startToCloseTimeout'),
    heartbeatTimeout: field('heartbeatTimeout'),
    retry: {
      initialInterval: field('initialInterval'),
      backoffCoefficient: 2,
      maximumInterval: field('maximumInterval'),
    },
  };
}

/** The fake's durations know ms, s and m only. */
const inMinutes = (options: ActivityOptions): ActivityOptions => ({
  ...options,
  startToCloseTimeout: String(options.startToCloseTimeout).replace(/^(\d+)h$/, (_, h: string) => `${Number(h) * 60}m`),
});

/** A pool whose statements all answer, except attempt 1's DELETE windows: their connection went silent. */
function fakePool(attemptOf: () => number, deleted: number[]) {
  const answer = async (sql: string, values?: unknown[]) => {
    const text = sql.trim();
    if (text.startsWith('SELECT target FROM erasure_subjects')) {
      return { rows: [{ target: { kind: 'tenant', value: 't1' } }], rowCount: 1 };
    }
    if (text.startsWith('SELECT coalesce(max(id), 0)')) return { rows: [{ id: '100' }], rowCount: 1 };
    if (text.startsWith('WITH gone AS (DELETE')) {
      if (attemptOf() === 1) return new Promise<never>(() => undefined); // no answer, ever
      deleted.push(values![1] as number);
      return { rows: [{ n: 3 }], rowCount: 1 };
    }
    return { rows: [], rowCount: 0 }; // BEGIN, COMMIT, the barrier's statements (no holder)
  };
  const connect = async () => {
    const client = { on: () => client, off: () => client, release: () => undefined, query: answer };
    return client;
  };
  return { options: { max: 10 }, connect, query: answer } as unknown as Pool;
}

beforeEach(() => jest.useFakeTimers({ doNotFake: ['nextTick', 'queueMicrotask'] }));
afterEach(() => jest.useRealTimers());

it('an erasure pass hung on a silent Postgres statement is retried after its heartbeat timeout', async () => {
  const options = erasurePassOptions();
  expect(options).toMatchObject({ startToCloseTimeout: '6h', heartbeatTimeout: '1m' });
  let attempt = 0;
  const deleted: number[] = [];
  const pool = fakePool(() => attempt, deleted);
  const { eraseRows } = createErasureActivities({
    pool,
    producer: {},
    config: { journal: { redeliveryHorizonMs: null } },
    log: { info: () => undefined, warn: () => undefined },
  } as unknown as ActivityDeps);
  const server = fakeActivityServer(inMinutes(options), (ctx: Context, n: number) => {
    attempt = n;
    return asyncLocalStorage.run(ctx, () =>
      eraseRows({ erasureId: 'e1', subjectHash: 'h', table: 'event_journal', afterId: 0, windowIds: 50 }),
    );
  });
  await jest.advanceTimersByTimeAsync(15 * 60_000);

  expect({ ...attemptsOf(server, '15 min'), deleted }).toEqual({
    attempt1: 'timed out (heartbeat)',
    attempts: 2,
    completed: true,
    deleted: [50, 100],
  });
});

it('a maintenance step hung on a silent Postgres statement is retried after its heartbeat timeout', async () => {
  expect(maintenanceOptions).toMatchObject({ startToCloseTimeout: '2h', heartbeatTimeout: '2m' });
  let attempt = 0;
  const asked: number[] = [];
  const answer = async (sql: string) => {
    if (sql.includes('FROM retention_policies')) {
      asked.push(attempt);
      if (attempt === 1) return new Promise<never>(() => undefined); // no answer, ever
    }
    return { rows: [], rowCount: 0 };
  };
  const pool = { options: { max: 10 }, query: answer } as unknown as Pool;
  const { expireDeadLetters } = createMaintenanceActivities({
    pool,
    config: { journal: { retentionDays: {}, redeliveryHorizonMs: null } },
    log: { info: () => undefined, warn: () => undefined },
  } as unknown as ActivityDeps);
  const server = fakeActivityServer(inMinutes(maintenanceOptions), (ctx: Context, n: number) => {
    attempt = n;
    return asyncLocalStorage.run(ctx, () => expireDeadLetters({ workflowId: 'm1', now: Date.now() }));
  });
  await jest.advanceTimersByTimeAsync(30 * 60_000);

  expect(attemptsOf(server, '30 min')).toEqual({
    attempt1: 'timed out (heartbeat)',
    attempts: 2,
    completed: true,
  });
});

/** How the fake server's attempts went: the first one's outcome (or how long it was kept alive), how many, done. */
function attemptsOf(server: ReturnType<typeof fakeActivityServer>, at: string) {
  const first = server.attempts[0];
  return {
    attempt1: first.outcome ?? `still live at ${at} (${first.heartbeats.length} heartbeats)`,
    attempts: server.attempts.length,
    completed: server.attempts.some((a) => a.outcome === 'completed'),
  };
}

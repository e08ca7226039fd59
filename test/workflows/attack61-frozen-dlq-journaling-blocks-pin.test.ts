import { createActivities } from '../../activities';
import { BATCH_IDLE_TIMEOUT_MS } from '../../journal/redelivery';
import { previewRepairs } from '../../journal/repair';
import { getDlqEntry } from '../../repository/event-dlq';
import { JOURNAL_PIN_WAIT_MS, pinJournal } from '../../repository/event-journal';
import type { Pool, PoolClient } from '../../shared/db';
import { seedDeadLetters } from '../support/dlq';
import { createSinkHarness, type SinkHarness } from '../support/sink';
import { activityDeps } from '../support/temporal';

/**
 * attack61 (helper review of a46a17b, the range replay's exact pin: repository/event-journal.ts pinJournal and the
 * journal's append lock; its writers outside ingest: activities/dlq-retry.ts, activities/dlq-repair.ts,
 * journal/repair.ts previewRepairs).
 *
 * Invariant (docs/lifecycle.md "Cold replay", docs/integrity.md §10): a pin waits for the appends under way, which end
 * in milliseconds, and one that does not (a frozen process) "is ended by Postgres (BATCH_IDLE_TIMEOUT_MS) or by its
 * partition's next writer"; so a range replay's planning, retried after a 55P03, is pinned once that bound has passed,
 * and ingest is held up only by the few pins tried meanwhile.
 *
 * Attack: the other transactions that take the journal's append lock, through appendOne: a DLQ retry (the activity
 * retryDlqEntries) and a repair's preview (previewRepairs, the API's dry run), each on a pool whose client freezes
 * at its transaction's end, as a worker or API process frozen there (SIGSTOP, a paused VM, a stalled event loop)
 * would: its last statement answered, the session idle in its transaction, holding the shared form of the lock.
 * Then the planning's pin is tried as Temporal retries it, for the bound a frozen ingest batch gets and two pins more.
 *
 * Observed (a46a17b): every pin failed with 55P03 (3 tries in 22 s, each holding up every append for 5 s behind it):
 * the frozen session is never ended (these transactions set no idle_in_transaction_session_timeout, unlike ingest's
 * batches), so no range replay can be planned, and each try stalls ingest, for as long as the process stays frozen
 * (until TCP keepalive, hours).
 *
 * Suspected cause: the append lock's shared holders were assumed to be ingest batches, whose transactions
 * withTransaction runs with BATCH_IDLE_TIMEOUT_MS; DLQ retry and repair (withTransaction without one) and the
 * preview (rolledBack) journal in transactions Postgres never ends.
 *
 * Fixed: every transaction that journals does so under the same idle bound as ingest's batches
 * (journal/append.ts withJournaling, for the retry, the repair and the preview): the frozen session is ended within
 * BATCH_IDLE_TIMEOUT_MS and the pin is taken by the next try.
 */
jest.setTimeout(120_000);

let h: SinkHarness;
const frozen: PoolClient[] = [];
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

beforeAll(async () => {
  h = await createSinkHarness('attack61');
});
// A frozen client left open is dropped after its test (its session ends, and its lock with it).
afterEach(() => {
  for (const client of frozen.splice(0)) client.release(new Error('frozen client dropped'));
});
afterAll(() => h?.close());

/**
 * h.pool, but a client's transaction never ends from this side: its COMMIT or ROLLBACK is never sent (the process
 * froze right before it), so Postgres sees the session idle in its transaction.
 */
function freezingPool(): Pool {
  const pool = h.pool;
  return new Proxy(pool, {
    get(target, prop, receiver) {
      if (prop !== 'connect') return Reflect.get(target, prop, receiver) as unknown;
      return async () => {
        const client = await target.connect();
        const query = client.query.bind(client) as (...args: unknown[]) => Promise<unknown>;
        (client as unknown as { query: unknown }).query = (...args: unknown[]) => {
          if (args[0] === 'COMMIT' || args[0] === 'ROLLBACK') {
            frozen.push(client);
            return new Promise(() => undefined);
          }
          return query(...args);
        };
        return client;
      };
    },
  });
}

async function frozenSessions(): Promise<number> {
  const { rows } = await h.pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_locks
      WHERE locktype = 'advisory' AND mode = 'ShareLock' AND granted
        AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
  );
  return rows[0].n;
}

/** Pins as planning is retried (Temporal's first intervals, 1 s then 2 s), until `ms` have passed: the tries made. */
async function pinWithin(ms: number): Promise<string> {
  const started = Date.now();
  const failures: string[] = [];
  for (let backoff = 1_000; Date.now() - started < ms; backoff *= 2) {
    try {
      await pinJournal(h.pool);
      return 'pinned';
    } catch (err) {
      failures.push(`${(err as { code?: string }).code} at ${Math.round((Date.now() - started) / 1000)} s`);
      await sleep(Math.min(backoff, Math.max(0, ms - (Date.now() - started))));
    }
  }
  return `not pinned in ${ms} ms: ${failures.join(', ')}`;
}

/** The bound a frozen ingest batch is given, then two pins more. */
const BOUND_MS = BATCH_IDLE_TIMEOUT_MS + 2 * JOURNAL_PIN_WAIT_MS + 2_000;

async function frozenThenPinned(start: () => Promise<unknown>) {
  const before = await frozenSessions();
  void start().catch(() => undefined);
  for (let tries = 0; tries < 200 && (await frozenSessions()) === before; tries++) await sleep(20);
  expect(await frozenSessions()).toBe(before + 1);
  return pinWithin(BOUND_MS);
}

it('a DLQ retry frozen before its COMMIT does not keep range replays from being pinned', async () => {
  const { fixable } = await seedDeadLetters(h.pool, h.topics.leads, { fixable: 1, tenant: 'pin58' });
  const activities = createActivities({ ...activityDeps(h), pool: freezingPool() });
  const result = await frozenThenPinned(() =>
    activities.retryDlqEntries({ ids: fixable, now: Date.now(), force: true }),
  );
  expect(result).toBe('pinned');
});

it("a repair's preview frozen before its ROLLBACK does not keep range replays from being pinned", async () => {
  const { fixable } = await seedDeadLetters(h.pool, h.topics.leads, { fixable: 1, tenant: 'pin58' });
  const entry = (await getDlqEntry(h.pool, fixable[0]))!;
  const ctx = { repairId: 'dlq-repair-preview', parse: { maxBytes: 1_000_000, lineageKey: h.lineageKey } };
  const result = await frozenThenPinned(() =>
    previewRepairs(freezingPool(), [entry], { value: { tenant_id: 'pin58', lead_id: 58 } }, ctx),
  );
  expect(result).toBe('pinned');
});

import { Client as PgClient } from 'pg';
import { plainApiEnv, spawnApiProcess } from '../support/api-process';
import { curlJson } from '../support/curl';
import { uniqueSuffix } from '../support/env';
import { exited, trackedChildren, untilPrinted } from '../support/ingest-process';
import { seedJournal } from '../support/journal';
import { createSinkHarness, type SinkHarness } from '../support/sink';

/**
 * attack32 (fixes 4406bfe/131a9c6: "only a request refused before its start is told 503"; docs/integrity.md
 * Shutdown: a client told 503 caused nothing, no row changed).
 *
 * Attack: API_REPLAY_RATE_LIMIT_PER_MINUTE=1. POST /replay/:id passes the replay rate limit (its preHandler records
 * the hit in api_rate_limit), then waits on its event's SELECT (event_journal locked by another session: a migration,
 * a VACUUM FULL). SIGTERM; the lock goes just after the close's grace, so the route reaches startForRequest with
 * requestsAbandoned aborted and answers 503 "The API is stopping: the workflow was not started; send it again". The
 * client does exactly that, to the next instance.
 *
 * Observed (2 of 2 runs; api exit 0 after 3.0 s): the first answer 503 "...not started; send it again"; the resend, to a new API on the same
 * database, 429 "Replay rate limit reached" (Retry-After ~60 s): the 503 spent the caller's budget. No workflow.
 * Suspected cause: api/plugins/replay-rate-limit.ts (the slot is taken in preHandler and never given back) with
 * api/start-workflow.ts (503 "not started" after it); the same holds for an Idempotency-Key claimed before the 503.
 *
 * Fixed: an answer that says nothing was started (answerSaysNothingStarted, api/start-workflow.ts: a 5xx other than 504
 * before the start was attempted) gives the request's slot back before it goes out (replay-rate-limit.ts onSend,
 * giveBackRateSlot); now rateHits 0 and the resend 202 (2 of 2 runs). The Idempotency-Key claim needs nothing: its
 * resend starts the claimed workflow id (test/integration/replay-rate-slot-give-back.test.ts).
 */
jest.setTimeout(120_000);

const SHUTDOWN_TIMEOUT_MS = 10_000;
let h: SinkHarness;
const children = trackedChildren();

beforeAll(async () => {
  h = await createSinkHarness('a32rateslot');
}, 60_000);

afterAll(async () => {
  children.killAll();
  await h?.close();
});

/** An API (a task queue of its own, one replay a minute), once it listens. */
async function startApi() {
  const api = await spawnApiProcess(h, {
    ...plainApiEnv(h, `a32-rateslot-${uniqueSuffix()}`, SHUTDOWN_TIMEOUT_MS),
    API_REPLAY_RATE_LIMIT_PER_MINUTE: '1',
  });
  children.track(api.child);
  await untilPrinted(api.child, 'Server listening at http://');
  return api;
}

const replay = (url: string, id: number) => curlJson('POST', `${url}/replay/${id}`, {}, 'attack32');

it('a POST /replay answered 503 "not started; send it again" at a stop gives its rate slot back: the resend is not refused 429', async () => {
  const [id] = await seedJournal(h.pool, 1, { topics: [h.topics.leads], label: 'a32rateslot' });
  const { child: api, url } = await startApi();
  const locker = new PgClient({ connectionString: h.databaseUrl });
  await locker.connect();
  try {
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE event_journal IN ACCESS EXCLUSIVE MODE');
    const first = replay(url, id);
    for (let i = 0; i < 100; i++) {
      const { rows } = await h.pool.query(
        `SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%FROM event_journal WHERE id%'`,
      );
      if (rows.length) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 300));
    const signalled = Date.now();
    api.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 2700)); // past the grace (~2.4 s), within the last second
    await locker.query('COMMIT');
    const answer = await first;
    const code = await Promise.race([exited(api), new Promise((r) => setTimeout(() => r('running'), 30_000))]);
    const tookMs = Date.now() - signalled;
    const { rows: hits } = await h.pool.query<{ n: number }>(
      `SELECT cardinality(hits) AS n FROM api_rate_limit WHERE caller = 'ip:127.0.0.1'`,
    );
    const { child: api2, url: url2 } = await startApi();
    const again = await replay(url2, id);
    api2.kill('SIGTERM');
    await exited(api2);
    const seen = {
      api: code,
      tookMs,
      first: answer.out.match(/HTTP (\d+)$/)?.[1],
      firstMessage: answer.out.match(/"message":"([^"]*)"/)?.[1],
      rateHits: hits[0]?.n,
      again: again.out.match(/HTTP (\d+)$/)?.[1],
      againMessage: again.out.match(/"message":"([^"]*)"/)?.[1]?.slice(0, 80),
    };
    console.log(JSON.stringify(seen));
    expect(seen.first).toBe('503');
    expect(seen.again).not.toBe('429');
  } finally {
    await locker.end().catch(() => undefined);
    api.kill('SIGKILL');
    await exited(api);
  }
});

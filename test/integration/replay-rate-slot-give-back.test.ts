import Fastify, { type FastifyInstance } from 'fastify';
import type { Client } from '@temporalio/client';
import answerAtClose from '../../api/plugins/answer-at-close';
import auth from '../../api/plugins/auth';
import errorHandler from '../../api/plugins/error-handler';
import replayRateLimit from '../../api/plugins/replay-rate-limit';
import type { TemporalGateway } from '../../api/plugins/temporal';
import { httpError } from '../../api/http-error';
import { startForRequest } from '../../api/start-workflow';
import { giveBackRateSlot, takeRateSlot } from '../../repository/api-limits';
import type { ScratchDatabase } from '../../bench/support/database';
import { createPool, type Pool } from '../../shared/db';
import { createLogger } from '../../shared/logger';
import { migrate } from '../../shared/migrate';
import { createTestDatabase } from '../support/database';
import { baseConfig } from '../support/env';

/**
 * The replay rate limit gives back the slot of a request whose answer says it started nothing (a 503 "send it again",
 * a 5xx before its start), before that answer goes out; one that may have started something (a 504, any answer once
 * its start was on its way, a 2xx) keeps it. attack32: a 503 "not started; send it again" at a stop had spent the
 * caller's budget, and the resend got 429 (test/faults/attack32-api-stop-503-took-rate-slot.test.ts).
 */
const log = createLogger('silent');
let database: ScratchDatabase;
let pool: Pool;
const CALLER = 'ip:127.0.0.1'; // inject's address, auth off

beforeAll(async () => {
  database = await createTestDatabase(baseConfig().databaseUrl, 'rateslot', (url) => migrate(url, log));
  pool = createPool(database.databaseUrl, 4, log);
}, 60_000);
afterAll(async () => {
  await pool?.end();
  await database?.drop();
});
beforeEach(() => pool.query('DELETE FROM api_rate_limit'));

const hits = async () =>
  (await pool.query<{ n: number }>('SELECT cardinality(hits) AS n FROM api_rate_limit WHERE caller = $1', [CALLER]))
    .rows[0]?.n ?? 0;

describe('giveBackRateSlot', () => {
  it('frees the one slot it is given, on the shared window, and does nothing once that hit is gone', async () => {
    const first = await takeRateSlot(pool, CALLER, 2);
    const second = await takeRateSlot(pool, CALLER, 2);
    expect(first.admitted && second.admitted).toBe(true);
    expect((await takeRateSlot(pool, CALLER, 2)).admitted).toBe(false);
    if (!first.admitted) throw new Error('unreachable');
    await giveBackRateSlot(pool, CALLER, first.hit);
    expect(await hits()).toBe(1);
    expect((await takeRateSlot(pool, CALLER, 2)).admitted).toBe(true);
    expect((await takeRateSlot(pool, CALLER, 2)).admitted).toBe(false);
    await giveBackRateSlot(pool, CALLER, first.hit); // already given back: the window keeps its two
    expect(await hits()).toBe(2);
    await pool.query('DELETE FROM api_rate_limit');
    await giveBackRateSlot(pool, CALLER, first.hit); // pruned meanwhile
  });
});

type Request = Parameters<typeof startForRequest>[1];

/** An API with the limit at one replay a minute and one limited route whose answer `answer` decides. */
async function api(answer: (request: Request) => Promise<unknown>, temporal?: TemporalGateway) {
  const app = Fastify();
  if (temporal) app.decorate('temporal', temporal);
  await app.register(answerAtClose);
  await app.register(errorHandler);
  await app.register(auth, { settings: { secrets: {} } });
  await app.register(replayRateLimit, { perMinute: 1, pool, idempotencyKeyTtlSeconds: 3600 });
  app.post('/replay', { config: { replayLimited: true } }, (request) => answer(request));
  await app.ready();
  return app;
}

const replay = (app: FastifyInstance, headers: Record<string, string> = {}) =>
  app.inject({ method: 'POST', url: '/replay', headers });

describe('the replay rate limit', () => {
  it.each([['a 503 before the start', 503]])(
    'gives back the slot of %s: the next request is admitted',
    async (_name, status) => {
      let next: number | undefined = status;
      const app = await api(async () => {
        const failWith = next;
        next = undefined;
        if (failWith) throw httpError(failWith, 'not started');
        return { status: 'accepted' };
      });
      try {
        expect((await replay(app)).statusCode).toBe(status);
        expect(await hits()).toBe(0); // before the answer went out
        expect((await replay(app)).statusCode).toBe(200);
        expect((await replay(app)).statusCode).toBe(429);
      } finally {
        await app.close();
      }
    },
  );

  it.each([
    ['a 2xx', 200, false],
    ['a 504 (may have started)', 504, false],
    ['a 503 once its start was on its way', 503, true],
    ['a 500 once its start was on its way', 500, true],
    // A failure of its own (a statement timeout in costly work before the start) is counted: gave back, the heaviest
    // failing requests would never be limited.
    ['a 500 before the start', 500, false],
    ['a 502 before the start', 502, false],
    ['a 4xx', 404, false],
  ])('keeps the slot of %s: the next request gets 429', async (_name, status, startAttempted) => {
    const app = await api(async (request) => {
      if (startAttempted) request.startingWorkflowId = 'replay-event-1-abc';
      if (status >= 400) throw httpError(status, 'failed');
      return { status: 'accepted' };
    });
    try {
      expect((await replay(app)).statusCode).toBe(status);
      expect(await hits()).toBe(1);
      expect((await replay(app)).statusCode).toBe(429);
    } finally {
      await app.close();
    }
  });

  it("gives back the slot of a request refused by startForRequest at the close, whose Idempotency-Key's resend then starts the workflow it claimed", async () => {
    const started: string[] = [];
    const temporal: TemporalGateway = {
      call: (fn) =>
        fn({
          connection: { withAbortSignal: (_signal: AbortSignal, f: () => unknown) => f() },
          workflow: {
            start: async (_wf: unknown, options: { workflowId: string }) => {
              started.push(options.workflowId);
              return { workflowId: options.workflowId };
            },
          },
        } as unknown as Client),
      close: async () => undefined,
    };
    const config = { temporal: { taskQueue: 'rate-slot-give-back' } } as Parameters<typeof startForRequest>[2];
    const replayEvent = async (input: { id: number }) => `replayed ${input.id}`;
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let reached!: () => void;
    const inRoute = new Promise<void>((resolve) => (reached = resolve));
    const route = (wait: Promise<void>) => async (request: Request) => {
      reached();
      await wait; // the route's read of its event, waiting on a lock
      const handle = await startForRequest(request.server, request, config, {
        prefix: 'replay-event-1',
        workflow: replayEvent,
        input: { id: 1 },
        searchAttributes: [],
      });
      return { status: 'accepted', workflow_id: handle.workflowId };
    };
    const key = { 'idempotency-key': 'attack32-rate-slot' };

    const first = await api(route(held), temporal);
    const answer = replay(first, key);
    await inRoute;
    const closing = first.close(); // the close gives up on it after its grace (2 s outside a stop)
    await new Promise<void>((resolve) => first.requestsAbandoned.addEventListener('abort', () => resolve()));
    release();
    const refused = await answer;
    await closing;
    expect(refused.statusCode).toBe(503);
    expect(refused.json().message).toMatch(/not started; send it again/);
    expect(started).toEqual([]);
    expect(await hits()).toBe(0);
    const { rows: claimed } = await pool.query<{ workflow_id: string }>('SELECT workflow_id FROM api_idempotency_keys');
    expect(claimed).toHaveLength(1);

    // The resend, to another instance on the same database.
    const second = await api(route(Promise.resolve()), temporal);
    try {
      const resent = await replay(second, key);
      expect(resent.statusCode).toBe(200);
      expect(resent.json().workflow_id).toBe(claimed[0].workflow_id);
      expect(started).toEqual([claimed[0].workflow_id]);
      expect(await hits()).toBe(1);
    } finally {
      await second.close();
    }
  });
});

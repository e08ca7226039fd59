import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Client } from '@temporalio/client';
import answerAtClose from '../../api/plugins/answer-at-close';
import errorHandler from '../../api/plugins/error-handler';
import { startForRequest } from '../../api/start-workflow';
import { within } from '../../shared/timeout';

/** POST /replay/1, which starts its workflow through startForRequest on `client` (Temporal's stand-in). */
function startingRoute(app: FastifyInstance, client: Client): void {
  app.decorate('temporal', { call: <T>(fn: (c: Client) => Promise<T>) => fn(client), close: async () => {} });
  app.post('/replay/1', async (request) =>
    startForRequest(app, request, { temporal: { taskQueue: 'q' } } as never, {
      prefix: 'replay-event-1',
      workflow: async (input: { eventId: number }) => input.eventId,
      input: { eventId: 1 },
      searchAttributes: [],
    }).then(() => ({ started: true })),
  );
}

const never = new Promise<string>(() => undefined);

describe('within', () => {
  it("is the promise's value when it settles in time", async () => {
    await expect(within(Promise.resolve('done'), 60_000, new AbortController().signal)).resolves.toBe('done');
  });

  it('is undefined once the wait runs out', async () => {
    await expect(within(never, 10)).resolves.toBeUndefined();
  });

  it('is undefined at once when the signal aborts, long before the wait runs out', async () => {
    const stop = new AbortController();
    const started = Date.now();
    const waiting = within(never, 60_000, stop.signal);
    setTimeout(() => stop.abort(), 20);
    await expect(waiting).resolves.toBeUndefined();
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('is undefined at once when the signal had already aborted', async () => {
    const stop = new AbortController();
    stop.abort();
    const started = Date.now();
    await expect(within(never, 60_000, stop.signal)).resolves.toBeUndefined();
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});

describe('answer-at-close', () => {
  it("the app's close ends a route's workflow wait at once, and the route answers 202", async () => {
    const app = Fastify();
    await app.register(answerAtClose);
    let waiting!: () => void;
    const inWait = new Promise<void>((resolve) => (waiting = resolve));
    app.post('/replay', async (_request, reply) => {
      const result = reply.workflowResult(never, 60_000);
      waiting();
      if ((await result) === undefined) return reply.status(202).send({ status: 'accepted', workflow_id: 'wf-1' });
      return { status: 'done' };
    });
    await app.ready();
    const started = Date.now();
    const response = app.inject({ method: 'POST', url: '/replay' });
    await inWait;
    const closing = app.close();
    const answer = await response;
    expect(answer.statusCode).toBe(202);
    expect(answer.json()).toEqual({ status: 'accepted', workflow_id: 'wf-1' });
    await closing;
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  /** A request over a real socket: its status code, or the error that ended it (a reset: 'socket hang up'). */
  function post(port: number, path: string): Promise<number | string> {
    return new Promise((resolve) => {
      const req = http.request({ host: '127.0.0.1', port, path, method: 'POST' }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', (err) => resolve(err.message));
      req.end();
    });
  }

  it.each([
    ['with the plugin', true, 201],
    ['without it (what the plugin prevents)', false, 'socket hang up'],
  ])(
    'a change in flight when the app closes, %s (registered: %s), ends in %s (forceCloseConnections drops every connection)',
    async (_name, registered, expected) => {
      const app = Fastify({ forceCloseConnections: true });
      if (registered) await app.register(answerAtClose);
      let handling!: () => void;
      const inHandler = new Promise<void>((resolve) => (handling = resolve));
      app.post('/dlq/triage', async (_request, reply) => {
        handling();
        await new Promise((resolve) => setTimeout(resolve, 300)); // the writes of a triage
        return reply.status(201).send({ status: 'triaged' });
      });
      app.get('/stream', (_request, reply) => {
        reply.raw.writeHead(200, { 'content-type': 'text/event-stream' });
        reply.raw.write(': open\n\n'); // a live stream never ends by itself: not waited for
      });
      await app.listen({ host: '127.0.0.1', port: 0 });
      const { port } = app.server.address() as AddressInfo;
      const stream = new Promise<void>((resolve) =>
        http.get({ host: '127.0.0.1', port, path: '/stream' }, () => resolve()).on('error', () => undefined),
      );
      await stream;
      const answer = post(port, '/dlq/triage');
      await inHandler;
      const started = Date.now();
      await app.close();
      expect(await answer).toBe(expected);
      expect(Date.now() - started).toBeLessThan(2_000);
    },
  );

  it('a change still unanswered after the grace is abandoned: requestsAbandoned aborts once the close stops waiting', async () => {
    const app = Fastify();
    await app.register(answerAtClose);
    let handling!: () => void;
    const inHandler = new Promise<void>((resolve) => (handling = resolve));
    const seenInHandler: boolean[] = [];
    app.post('/replay/range', async () => {
      handling();
      await never; // a workflow start stuck on a frozen Temporal
    });
    await app.ready();
    void app.inject({ method: 'POST', url: '/replay/range' }).catch(() => undefined);
    await inHandler;
    seenInHandler.push(app.requestsAbandoned.aborted);
    const started = Date.now();
    await app.close();
    expect({ before: seenInHandler, after: app.requestsAbandoned.aborted }).toEqual({ before: [false], after: true });
    // Outside a stop the close waits its fallback grace for the answer, then gives up.
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_900);
  });

  it('a change whose body has not all come is not waited for: a slow client does not hold the close', async () => {
    const app = Fastify({ forceCloseConnections: true });
    await app.register(answerAtClose);
    app.post('/dlq/triage', async () => ({ status: 'triaged' }));
    await app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = app.server.address() as AddressInfo;
    const req = http.request({
      host: '127.0.0.1',
      port,
      path: '/dlq/triage',
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': '100' },
    });
    const ended = new Promise<string>((resolve) => req.on('error', (err) => resolve(err.message)));
    req.write('{"ids":'); // and nothing more
    await new Promise((r) => setTimeout(r, 100));
    const started = Date.now();
    await app.close();
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(await ended).toBe('socket hang up');
  });

  it('a change whose body comes in after the close began is refused with a 503, and closes its connection', async () => {
    const app = Fastify({ forceCloseConnections: true });
    await app.register(answerAtClose);
    let handled = 0;
    app.post('/dlq/triage', async () => ({ status: 'triaged', handled: ++handled }));
    let slowHandling!: () => void;
    const inSlow = new Promise<void>((resolve) => (slowHandling = resolve));
    app.post('/slow', async () => {
      slowHandling();
      await new Promise((r) => setTimeout(r, 500)); // keeps the close waiting meanwhile
      return { status: 'done' };
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = app.server.address() as AddressInfo;
    const slow = post(port, '/slow');
    await inSlow;
    const late = new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port,
          path: '/dlq/triage',
          method: 'POST',
          headers: { 'content-type': 'application/json' },
        },
        (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on('error', reject);
      req.write('{"ids":'); // the headers are in before the close ...
      setTimeout(() => req.end('[1]}'), 150); // ... the rest of the body after it began
    });
    await new Promise((r) => setTimeout(r, 50));
    const closing = app.close();
    expect(await late).toMatchObject({ status: 503, body: expect.stringContaining('The API is stopping') });
    expect(await slow).toBe(200); // the slow one, in flight before, was answered
    await closing;
    expect(handled).toBe(0);
  });

  it('startForRequest starts nothing once the close gave up on the requests in flight', async () => {
    const app = Fastify();
    await app.register(answerAtClose);
    let starts = 0;
    const client = {
      connection: { withAbortSignal: (_signal: AbortSignal, fn: () => Promise<unknown>) => fn() },
      workflow: { start: async () => ++starts },
    } as unknown as Client;
    app.decorate('temporal', { call: <T>(fn: (c: Client) => Promise<T>) => fn(client), close: async () => {} });
    let handling!: () => void;
    const inHandler = new Promise<void>((resolve) => (handling = resolve));
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let outcome: unknown;
    app.post('/replay/1', async (request) => {
      handling();
      await released; // the request is still on its way (authorising, reading the event) when the close gives up
      outcome = await startForRequest(app, request, { temporal: { taskQueue: 'q' } } as never, {
        prefix: 'replay-event-1',
        workflow: async (input: { eventId: number }) => input.eventId,
        input: { eventId: 1 },
        searchAttributes: [],
      }).catch((err: { statusCode?: number }) => err.statusCode);
      return { outcome };
    });
    await app.ready();
    void app.inject({ method: 'POST', url: '/replay/1' }).catch(() => undefined);
    await inHandler;
    await app.close(); // waits its 2 s grace, then gives up
    release();
    for (let i = 0; i < 100 && outcome === undefined; i++) await new Promise((r) => setTimeout(r, 10));
    expect({ outcome, starts }).toEqual({ outcome: 503, starts: 0 });
  });

  it('a change whose body has all come is answered at close even before its handler (a slow hook before it)', async () => {
    const app = Fastify({ forceCloseConnections: true });
    await app.register(answerAtClose);
    let hooked!: () => void;
    const inHook = new Promise<void>((resolve) => (hooked = resolve));
    // Before preHandler, as the body's parsing or a rate limit's query may be when the close begins.
    app.addHook('preValidation', async () => {
      hooked();
      await new Promise((resolve) => setTimeout(resolve, 300));
    });
    app.post('/dlq/triage', async (_request, reply) => reply.status(201).send({ status: 'triaged' }));
    await app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = app.server.address() as AddressInfo;
    const answer = post(port, '/dlq/triage');
    await inHook;
    await app.close();
    // Before (counted from preHandler): 'socket hang up'.
    expect(await answer).toBe(201);
  });

  it("a decided request's audit write is not waited for at close (reply.unlessClosing): it answers 202 at once", async () => {
    const app = Fastify();
    await app.register(answerAtClose);
    let writing!: () => void;
    const inWrite = new Promise<void>((resolve) => (writing = resolve));
    const warnings: string[] = [];
    let failWrite!: (err: Error) => void;
    app.post('/replay/1', async (request, reply) => {
      Object.assign(request.log, { warn: (_: unknown, msg: string) => warnings.push(msg) });
      const write = new Promise<void>((_resolve, reject) => (failWrite = reject)); // an audit row on a stalled Postgres
      writing();
      const written = await reply.unlessClosing(write);
      return reply.status(202).send({ status: 'accepted', workflow_id: 'wf-1', audit_written: written !== undefined });
    });
    await app.ready();
    const response = app.inject({ method: 'POST', url: '/replay/1' });
    await inWrite;
    const started = Date.now();
    const closing = app.close();
    const answer = await response;
    expect({ status: answer.statusCode, body: answer.json() }).toEqual({
      status: 202,
      body: { status: 'accepted', workflow_id: 'wf-1', audit_written: false },
    });
    await closing;
    expect(Date.now() - started).toBeLessThan(1_500); // not the 2 s grace
    failWrite(new Error('the write failed later')); // left to finish: its failure is logged, not unhandled
    await new Promise((r) => setTimeout(r, 20));
    expect(warnings).toEqual(['Work left to finish at close failed']);
  });

  it('a start on its way when the close gives up is cancelled, and the answer (504) names the workflow to look up', async () => {
    const app = Fastify();
    await app.register(errorHandler);
    await app.register(answerAtClose);
    let starting!: () => void;
    const inStart = new Promise<void>((resolve) => (starting = resolve));
    const client = {
      connection: {
        // Temporal has the start, its answer does not come (a frozen frontend): only the abort ends the call.
        withAbortSignal: (signal: AbortSignal) =>
          new Promise((_resolve, reject) => {
            starting();
            signal.addEventListener('abort', () => reject(new Error('cancelled')));
          }),
      },
    } as unknown as Client;
    startingRoute(app, client);
    await app.ready();
    const response = app.inject({ method: 'POST', url: '/replay/1' });
    await inStart;
    await app.close(); // its 2 s grace, then requestsAbandoned cancels the start
    const answer = await response;
    expect(answer.statusCode).toBe(504);
    expect(answer.json()).toMatchObject({
      statusCode: 504,
      error: 'Gateway Timeout',
      workflow_id: expect.stringMatching(/^replay-event-1-[0-9a-f]{10}$/),
      message: expect.stringContaining('it may have started; look it up before sending the request again'),
    });
    expect(answer.json().message).toContain(answer.json().workflow_id);
  });

  it.each([
    ['times out (DEADLINE_EXCEEDED)', 504, 4],
    ['loses its link and the retries fail (UNAVAILABLE)', 504, 14],
    ['is cut (CANCELLED)', 504, 1],
    ['is refused by Temporal itself (INVALID_ARGUMENT: nothing started)', 500, 3],
  ])(
    'a start sent whose call %s is answered %i (a 504 names the workflow Temporal may have started)',
    async (_, status, code) => {
      const app = Fastify();
      await app.register(errorHandler);
      await app.register(answerAtClose);
      const client = {
        connection: {
          withAbortSignal: () => Promise.reject(Object.assign(new Error(`grpc ${code}`), { code })),
        },
      } as unknown as Client;
      startingRoute(app, client);
      const answer = await app.inject({ method: 'POST', url: '/replay/1' });
      // Before: the gateway's 503 "Temporal is unreachable" (DEADLINE_EXCEEDED until 477e805, UNAVAILABLE until
      // attack33), naming no workflow, though it may have started.
      expect(answer.statusCode).toBe(status);
      if (status === 504) {
        expect(answer.json()).toMatchObject({ workflow_id: expect.stringMatching(/^replay-event-1-[0-9a-f]{10}$/) });
      }
      await app.close();
    },
  );

  it('a change whose handler is still running when the close ends is told it may have been carried out (504), not reset', async () => {
    const app = Fastify({ forceCloseConnections: true });
    await app.register(answerAtClose);
    let handling!: () => void;
    const inHandler = new Promise<void>((resolve) => (handling = resolve));
    app.put('/retention', async () => {
      handling();
      await never; // an UPDATE waiting on a locked table: it may still commit
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = app.server.address() as AddressInfo;
    const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path: '/retention', method: 'PUT' }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });
    await inHandler;
    await app.close(); // its 2 s grace, then its last second, then its own answer
    const { status, body } = await answer;
    expect({ status, message: (JSON.parse(body) as { message: string }).message }).toEqual({
      status: 504,
      message:
        'The API stopped before this request finished: it may have been carried out; check before sending it again',
    });
  });

  it.each([
    ['still unanswered', false],
    ['answered by its route, queued behind the first', true],
  ])(
    'changes pipelined on one connection, the first unanswered when the close ends, the second %s: both answers are written, in order',
    async (_name, answersAtOnce) => {
      const app = Fastify({ forceCloseConnections: true });
      await app.register(errorHandler);
      await app.register(answerAtClose);
      let handled = 0;
      let bothHandling!: () => void;
      const inHandlers = new Promise<void>((resolve) => (bothHandling = resolve));
      app.put('/retention', async () => {
        if (++handled === 2) bothHandling();
        await never; // an UPDATE waiting on a locked table
      });
      app.post('/replay/1', async (request, reply) => {
        request.startingWorkflowId = 'replay-event-1-0123456789';
        if (++handled === 2) bothHandling();
        if (answersAtOnce) return reply.status(202).send({ workflow_id: request.startingWorkflowId });
        await never; // a start whose answer Temporal never sends
      });
      await app.listen({ host: '127.0.0.1', port: 0 });
      const { port } = app.server.address() as AddressInfo;
      const socket = net.connect(port, '127.0.0.1');
      let got = '';
      socket.on('data', (c: Buffer) => (got += c.toString()));
      const ended = new Promise<void>((resolve) => socket.on('close', () => resolve()));
      socket.write(
        'PUT /retention HTTP/1.1\r\nHost: x\r\ncontent-length: 0\r\n\r\n' +
          'POST /replay/1 HTTP/1.1\r\nHost: x\r\ncontent-length: 0\r\n\r\n',
      );
      await inHandlers;
      await app.close(); // its 2 s grace, its last second, then its own answers
      await ended;
      const answers = [...got.matchAll(/HTTP\/1\.1 (\d{3})[^]*?\r\n\r\n(\{[^]*?\})(?=HTTP|$)/g)].map((m) => ({
        status: Number(m[1]),
        workflow_id: (JSON.parse(m[2]) as { workflow_id?: string }).workflow_id,
      }));
      // Before: the first answer ended the connection ('connection: close') and the second, queued behind it, was lost.
      expect(answers).toEqual([
        { status: 504, workflow_id: undefined },
        { status: answersAtOnce ? 202 : 504, workflow_id: 'replay-event-1-0123456789' },
      ]);
    },
  );
});

import Fastify from 'fastify';
import workflowWaits from '../../api/plugins/workflow-waits';
import { within } from '../../api/route-helpers';

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

describe('workflow-waits', () => {
  it("the app's close ends a route's workflow wait at once, and the route answers 202", async () => {
    const app = Fastify();
    await app.register(workflowWaits);
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
});

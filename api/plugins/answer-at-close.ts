import { finished } from 'node:stream';
import fp from 'fastify-plugin';
import type { FastifyReply } from 'fastify';
import { stopWait } from '../../shared/stop-clock';
import { settleWithin, within } from '../../shared/timeout';
import { httpError } from '../http-error';

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Aborted once the close stopped waiting for the requests still in flight: their connections are about to be
     * dropped, so what they have not done yet (a workflow's start) they must not do (startForRequest).
     */
    requestsAbandoned: AbortSignal;
  }
  interface FastifyReply {
    /**
     * The workflow's result, or undefined when it has not settled within `ms` or once the app began to close (the
     * route answers 202 with the workflow id then).
     */
    workflowResult<T>(result: Promise<T>, ms: number): Promise<T | undefined>;
  }
}

/**
 * How long the app's close waits for the answers of the requests in flight: a quarter of what is left of the stop (the
 * rest is for the closes after it, and in `start` for ingest's and the worker's stops), or ANSWER_GRACE_MS when the app
 * is closed outside a stop (tests).
 */
const ANSWER_GRACE_MS = 2000;
function answerGraceMs(): number {
  const left = stopWait(Number.POSITIVE_INFINITY);
  return Number.isFinite(left) ? Math.floor(left / 4) : ANSWER_GRACE_MS;
}

/** Methods that change nothing: their requests (the live stream among them) are not waited for at close. */
const READS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** Resolves once the reply has been written out, or its client has gone. */
function whenSent(raw: FastifyReply['raw']): Promise<void> {
  // An HTTP/2 reply whose stream the client already reset never tells `finished` so.
  if ((raw as { stream?: { destroyed: boolean } }).stream?.destroyed) return Promise.resolve();
  return new Promise((resolve) => finished(raw, () => resolve()));
}

/**
 * A request that changes something and is in flight when the app begins to close (SIGTERM) gets its answer before
 * connections are dropped (fastify's forceCloseConnections, close-connections.ts over TLS), within a quarter of what
 * is left of the stop; one still unanswered then does not go on to start a workflow (requestsAbandoned), and one whose
 * body comes in after the close began is refused with a 503. A reset instead leaves the client not knowing what was
 * done: a replay accepted but its workflow id never seen, and a retry without an Idempotency-Key starts a second one.
 *
 * The routes that start a workflow wait up to API_REPLAY_WAIT_MS for its result (`reply.workflowResult`); the workflow
 * is started and its audit row written by then, so the request is decided. At close each such wait ends at once and
 * its route answers what it answers when the wait runs out: 202 with the workflow id.
 *
 * Register it before closeConnectionsOnClose and before the routes: preClose hooks run in order, and that one's grace
 * must start after the answers are out; the preHandler hook applies to routes registered after it.
 */
export default fp(
  async (app) => {
    const stopping = new AbortController();
    const abandoned = new AbortController();
    const inFlight = new Set<Promise<void>>();
    app.decorate('requestsAbandoned', abandoned.signal);
    app.decorateReply('workflowResult', <T>(result: Promise<T>, ms: number) => within(result, ms, stopping.signal));
    // From preHandler: a request whose body has not all come yet has done nothing, and a client sending it slowly
    // must not hold the stop (in `start`, ingest's and the worker's stops come after the API's).
    app.addHook('preHandler', async (request, reply) => {
      if (READS.has(request.method)) return;
      // One whose body came after the close began has done nothing yet, and is not waited for: it is refused.
      if (stopping.signal.aborted) {
        if (request.raw.httpVersionMajor < 2) reply.header('connection', 'close');
        throw httpError(503, 'The API is stopping: the request was not handled; send it again');
      }
      const sent = whenSent(reply.raw);
      inFlight.add(sent);
      void sent.then(() => inFlight.delete(sent));
    });
    app.addHook('preClose', async () => {
      stopping.abort();
      if (inFlight.size) await settleWithin(Promise.all(inFlight), answerGraceMs());
      abandoned.abort();
    });
  },
  { name: 'answer-at-close' },
);

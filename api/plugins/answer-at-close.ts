import { finished } from 'node:stream';
import fp from 'fastify-plugin';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { stopWait } from '../../shared/stop-clock';
import { settleWithin, within } from '../../shared/timeout';
import { httpError } from '../http-error';
import { unconfirmedStartMessage } from '../start-workflow';

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
    /**
     * What a request does once its workflow started (its audit row): its value, or undefined once the app began to
     * close. The request is decided by then, and its answer (202 with the workflow id) must go out before its
     * connection drops; the work is left to finish (the workflow writes the same row itself), its failure logged.
     */
    unlessClosing<T>(work: Promise<T>): Promise<T | undefined>;
  }
  interface FastifyRequest {
    /** The workflow this request is starting or has started (start-workflow.ts), for the answer at close. */
    startingWorkflowId?: string;
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

/**
 * How long the requests still in flight at the end of the grace get to write the answers that end gives them (a start
 * cancelled on its way, one refused before it began): at most a second, and a tenth of what is left of the stop.
 */
const LAST_ANSWERS_MS = 1000;
function lastAnswersMs(): number {
  return Math.min(LAST_ANSWERS_MS, Math.floor(stopWait(Number.POSITIVE_INFINITY) / 10));
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
 * is left of the stop; one whose body comes in after the close began is refused with a 503. A reset instead leaves the
 * client not knowing what was done: a replay accepted but its workflow id never seen, and a retry without an
 * Idempotency-Key starts a second one.
 *
 * Once its workflow started a request is decided: at close, what it still waits for (its audit row,
 * `reply.unlessClosing`; the workflow's result, `reply.workflowResult`, which waits up to API_REPLAY_WAIT_MS) ends at
 * once and its route answers 202 with the workflow id. One still unanswered when the grace ends starts nothing
 * (requestsAbandoned): refused with a 503 before its start, or, with its start on its way cancelled, told that
 * Temporal had not confirmed it and which workflow to look up (start-workflow.ts).
 *
 * Register it before closeConnectionsOnClose and before the routes: preClose hooks run in order, and that one's grace
 * must start after the answers are out; the hooks apply to routes registered after it.
 */
export default fp(
  async (app) => {
    const stopping = new AbortController();
    const abandoned = new AbortController();
    const inFlight = new Map<FastifyRequest['raw'], Promise<void>>();
    // Those whose body had not all come when the close began, and those past this plugin's preHandler.
    const late = new WeakSet<FastifyRequest['raw']>();
    const handling = new WeakSet<FastifyRequest['raw']>();
    const replies = new Map<FastifyRequest['raw'], FastifyReply>();
    /**
     * An answer given at close ends its HTTP/1.1 connection (a keep-alive client must not send another request on a
     * connection about to be dropped), unless another change pipelined on it has not had its answer written yet (given,
     * or still to come): answers go out in request order, and those queued behind one that ends the connection are
     * never written.
     */
    const endConnectionAfter = (reply: FastifyReply) => {
      const { raw } = reply.request;
      if (raw.httpVersionMajor >= 2) return;
      for (const other of inFlight.keys()) if (other !== raw && other.socket === raw.socket) return;
      reply.header('connection', 'close');
    };
    app.decorate('requestsAbandoned', abandoned.signal);
    app.decorateReply('workflowResult', <T>(result: Promise<T>, ms: number) => within(result, ms, stopping.signal));
    app.decorateReply('unlessClosing', async function <T>(this: FastifyReply, work: Promise<T>) {
      const outcome = work.then(
        (value) => ({ value }),
        (err: unknown) => ({ err }),
      );
      const settled = await within(outcome, Number.POSITIVE_INFINITY, stopping.signal);
      if (settled === undefined) {
        const log = this.log;
        void outcome.then((o) => {
          if ('err' in o) log.warn({ err: o.err }, 'Work left to finish at close failed');
        });
        return undefined;
      }
      if ('err' in settled) throw settled.err;
      return settled.value;
    });
    // From onRequest, the first hook (a request routed after the close began gets fastify's own 503 instead): one
    // whose body has all come is answered before its connection drops, wherever it is (parsing, the rate limit, a
    // query). One whose body has not all come has done nothing, and a client sending it slowly must not hold the stop
    // (in `start`, ingest's and the worker's stops come after the API's): it is waited for only once it has.
    app.addHook('onRequest', async (request, reply) => {
      if (READS.has(request.method)) return;
      const sent = whenSent(reply.raw);
      inFlight.set(request.raw, sent);
      replies.set(request.raw, reply);
      void sent.then(() => {
        inFlight.delete(request.raw);
        replies.delete(request.raw);
      });
    });
    app.addHook('preHandler', async (request, reply) => {
      if (READS.has(request.method)) return;
      // One whose body came after the close began, or that comes here after the close gave up waiting, has done
      // nothing yet: it is refused rather than handled.
      if (late.has(request.raw) || abandoned.signal.aborted) {
        endConnectionAfter(reply);
        throw httpError(503, NOT_HANDLED);
      }
      handling.add(request.raw);
    });
    app.addHook('preClose', async () => {
      stopping.abort();
      for (const raw of inFlight.keys()) if (raw.complete === false) late.add(raw);
      const until = Date.now() + answerGraceMs();
      await intakeSettled(app.server, until);
      await answered(inFlight, until - Date.now());
      // Those still unanswered start nothing from here; the start of one on its way is cancelled (start-workflow.ts),
      // and each gets a moment to say so before its connection drops.
      abandoned.abort();
      const last = lastAnswersMs();
      if (inFlight.size) await answered(inFlight, last);
      // Still unanswered (a statement waiting on a lock, a start whose cancellation has not come back): told what may
      // have happened, rather than reset.
      for (const [raw, reply] of replies) {
        if (!reply.sent && raw.complete !== false) {
          endConnectionAfter(reply);
          answerAtClose(reply, handling.has(raw));
        }
      }
      if (inFlight.size) await answered(inFlight, Math.min(FORCED_ANSWERS_MS, last));
    });
  },
  { name: 'answer-at-close' },
);

const NOT_HANDLED = 'The API is stopping: the request was not handled; send it again';

/** How long the answers the close gives itself get to be written. */
const FORCED_ANSWERS_MS = 200;

/**
 * The close's own answer to a request still unanswered at its end: one not yet handled did nothing (503); one being
 * handled may have done what it asked (504), and one starting a workflow names it.
 */
function answerAtClose(reply: FastifyReply, handled: boolean): void {
  const workflowId = reply.request.startingWorkflowId;
  const [status, error, message, fields] = workflowId
    ? [504, 'Gateway Timeout', unconfirmedStartMessage(workflowId), { workflow_id: workflowId }]
    : handled
      ? [
          504,
          'Gateway Timeout',
          'The API stopped before this request finished: it may have been carried out; check before sending it again',
          {},
        ]
      : [503, 'Service Unavailable', NOT_HANDLED, {}];
  reply.code(status).send({ statusCode: status, error, message, ...fields });
}

/** How long no connection and no request must come before the close stops taking them in. */
const INTAKE_QUIET_MS = 100;

/**
 * Resolves once the server has gone INTAKE_QUIET_MS without a new connection or request, or at `until`. The server
 * accepts until the preClose hooks are done, and what clients sent before the close began may still wait in its
 * sockets (connections not yet accepted, requests not yet read): taken in, each gets an answer (fastify's 503 at once,
 * or ours) rather than a reset when connections are dropped.
 */
async function intakeSettled(server: FastifyInstance['server'], until: number): Promise<void> {
  let last = Date.now();
  const touch = () => (last = Date.now());
  server.on('connection', touch).on('request', touch);
  try {
    for (let now = last; now - last < INTAKE_QUIET_MS && now < until; now = Date.now()) {
      await new Promise((resolve) => setTimeout(resolve, Math.min(last + INTAKE_QUIET_MS, until) - now));
    }
  } finally {
    server.off('connection', touch).off('request', touch);
  }
}

/** How often a wait for answers looks again for requests whose body has come meanwhile. */
const RECHECK_MS = 50;

/**
 * Resolves once every request in flight whose body has all come, by then or while waiting, has been answered, or
 * after `ms`.
 */
async function answered(inFlight: Map<FastifyRequest['raw'], Promise<void>>, ms: number): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    // (A request injected in a test has no `complete`: all of it is there.)
    const waiting = [...inFlight].filter(([raw]) => raw.complete !== false).map(([, sent]) => sent);
    const left = until - Date.now();
    if (waiting.length === 0 || left <= 0) return;
    // Until those are answered, and meanwhile again and again for a body that has all come since.
    await settleWithin(Promise.all(waiting), inFlight.size > waiting.length ? Math.min(RECHECK_MS, left) : left);
  }
}

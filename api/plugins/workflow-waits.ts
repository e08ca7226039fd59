import { finished } from 'node:stream';
import fp from 'fastify-plugin';
import type { FastifyReply } from 'fastify';
import { stopWait } from '../../shared/stop-clock';
import { settleWithin } from '../../shared/timeout';
import { within } from '../route-helpers';

declare module 'fastify' {
  interface FastifyReply {
    /**
     * The workflow's result, or undefined when it has not settled within `ms` or once the app began to close (the
     * route answers 202 with the workflow id then). The app's close waits for this reply to be sent.
     */
    workflowResult<T>(result: Promise<T>, ms: number): Promise<T | undefined>;
  }
}

/** How long, at most, the app's close waits for the replies of the waits it ended (cut by the stop's clock). */
const ANSWER_GRACE_MS = 1000;

/** Resolves once the reply has been written out, or its client has gone. */
function whenSent(raw: FastifyReply['raw']): Promise<void> {
  // An HTTP/2 reply whose stream the client already reset never tells `finished` so.
  if ((raw as { stream?: { destroyed: boolean } }).stream?.destroyed) return Promise.resolve();
  return new Promise((resolve) => finished(raw, () => resolve()));
}

/**
 * The routes that start a workflow wait up to API_REPLAY_WAIT_MS for its result. The workflow is started and its
 * audit row written by then, so the request is decided: when the app begins to close (SIGTERM), each wait ends at
 * once and its route answers what it answers when the wait runs out, 202 with the workflow id, and the close waits
 * for those replies before connections are dropped (fastify's forceCloseConnections, close-connections.ts over TLS).
 * A reset instead would leave the client without the workflow id, and its retry would start a second workflow.
 *
 * Register it before closeConnectionsOnClose: preClose hooks run in order, and that one's grace must start after the
 * replies are out.
 */
export default fp(
  async (app) => {
    const stopping = new AbortController();
    const unsent = new Set<Promise<void>>();
    app.decorateReply('workflowResult', function <T>(this: FastifyReply, result: Promise<T>, ms: number) {
      const sent = whenSent(this.raw);
      unsent.add(sent);
      void sent.then(() => unsent.delete(sent));
      return within(result, ms, stopping.signal);
    });
    app.addHook('preClose', async () => {
      stopping.abort();
      if (unsent.size) await settleWithin(Promise.all(unsent), stopWait(ANSWER_GRACE_MS));
    });
  },
  { name: 'workflow-waits' },
);

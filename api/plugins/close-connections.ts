import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { stopWait } from '../../shared/stop-clock';

/** How long connections get, once the app closes, to finish what they were sending (the live streams' end). */
const CLOSE_GRACE_MS = 500;

/**
 * Drops every open connection when the app closes, for a server that cannot do it itself. Over plain HTTP fastify's
 * forceCloseConnections calls the server's closeAllConnections(). The HTTPS/HTTP/2 server (API_TLS) has no such
 * method: fastify then closes only the HTTP/2 sessions gracefully and the sockets it saw asking for keep-alive, so a
 * client still downloading an export, or one that has sent half a request, would hold close() open until the stop
 * ran out of time. Here every socket is tracked from its first byte; from the close on, new ones are refused, and
 * those still open after a short grace (in which the live streams' end and the sessions' GOAWAY go out) are destroyed.
 */
export function closeConnectionsOnClose(app: FastifyInstance, graceMs = CLOSE_GRACE_MS): void {
  const sockets = new Set<Socket>();
  let closing = false;
  app.server.on('connection', (socket: Socket) => {
    if (closing) {
      socket.destroy();
      return;
    }
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  app.addHook('preClose', (done) => {
    closing = true;
    setTimeout(() => {
      for (const socket of sockets) socket.destroy();
      sockets.clear();
    }, stopWait(graceMs)).unref();
    done();
  });
}

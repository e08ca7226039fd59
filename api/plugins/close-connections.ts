import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';

/**
 * Drops every open connection when the app closes, for a server that cannot do it itself. Over plain HTTP fastify's
 * forceCloseConnections calls the server's closeAllConnections(). The HTTPS/HTTP/2 server (API_TLS) has no such
 * method: fastify then closes only the HTTP/2 sessions gracefully and the sockets it saw asking for keep-alive, so a
 * client still downloading an export, or one that has sent half a request, would hold close() open until the stop
 * ran out of time. Here every socket is tracked from its first byte and destroyed before the server closes, the same
 * as closeAllConnections() does over plain HTTP.
 */
export function closeConnectionsOnClose(app: FastifyInstance): void {
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
    for (const socket of sockets) socket.destroy();
    sockets.clear();
    done();
  });
}

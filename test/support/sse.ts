import http from 'node:http';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../api/app';
import type { SinkHarness } from './sink';

/** What a test SSE client has received so far. */
export interface Sse {
  frames: { id?: string; data: Record<string, unknown> }[];
  comments: string[];
  status: number;
  /** The response stream, to pause and resume reading (a slow client). */
  res: http.IncomingMessage;
  close(): void;
}

/** A real SSE client over HTTP on `${base}/crm-events${query}`: collects frames and comments. */
export function connectSse(base: string, query = '', headers: Record<string, string> = {}): Promise<Sse> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${base}/crm-events${query}`, { headers }, (res) => {
      const sse: Sse = { frames: [], comments: [], status: res.statusCode ?? 0, res, close: () => req.destroy() };
      let buffer = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (block.startsWith(':')) sse.comments.push(block.slice(1).trim());
          const id = /^id: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (data) sse.frames.push({ id, data: JSON.parse(data) });
        }
      });
      resolve(sse);
    });
    req.on('error', (err) => (err.message === 'socket hang up' ? undefined : reject(err)));
  });
}

/** The domain_event frames among what a client received. */
export const domainEvents = (s: Sse) => s.frames.filter((f) => f.data.kind === 'domain_event');

/** The API on a harness, listening on a free loopback port (SSE needs a real connection, not inject). */
export async function listenApp(h: SinkHarness): Promise<{ app: FastifyInstance; base: string }> {
  const app = await buildApp({ config: h.config, pool: h.pool, metrics: h.metrics, log: h.log, healthChecks: {} });
  await app.listen({ host: '127.0.0.1', port: 0 });
  return { app, base: `http://127.0.0.1:${(app.server.address() as { port: number }).port}` };
}

import net from 'node:net';
import type { ArchiveS3Config } from '../../shared/config';
import { kafkaBrokerPid } from './stack';

/** The request line of a segment's manifest PUT (path-style: /<bucket>/segments/<name>/manifest.json). */
export const MANIFEST_PUT = /^PUT \/[^/]+\/segments\/[^/]+\/manifest\.json/;

/**
 * A TCP proxy to the S3 server that watches request lines; once `freezeWhen` says so for one, it SIGSTOPs the S3
 * server itself before passing that request on (so the request and every later one meet a stopped server).
 */
export interface TriggerProxy {
  port: number;
  lines: string[];
  frozenAt?: string;
  arm(freezeWhen: (line: string, index: number) => boolean): void;
  thaw(): void;
  close(): Promise<void>;
}

/**
 * A trigger proxy in front of the bucket's S3 server (the process listening on its endpoint's port, which it
 * SIGSTOPs: run in the alone group). close() resumes the server.
 */
export function s3TriggerProxy(s3: ArchiveS3Config): Promise<TriggerProxy> {
  const endpoint = new URL(s3.endpoint!);
  return triggerProxy(endpoint.hostname, Number(endpoint.port), kafkaBrokerPid([endpoint.host]));
}

async function triggerProxy(host: string, port: number, serverPid: number): Promise<TriggerProxy> {
  const sockets = new Set<net.Socket>();
  let frozen = false;
  let freezeWhen: ((line: string, index: number) => boolean) | undefined;
  const state: TriggerProxy = {
    port: 0,
    lines: [],
    arm(fn) {
      state.lines = [];
      state.frozenAt = undefined;
      freezeWhen = fn;
    },
    thaw() {
      process.kill(serverPid, 'SIGCONT');
      frozen = false;
      freezeWhen = undefined;
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    async close() {
      state.thaw();
      await new Promise((r) => server.close(r));
    },
  };
  const server = net.createServer((clientSocket) => {
    const upstream = net.connect({ host, port });
    sockets.add(clientSocket);
    sockets.add(upstream);
    clientSocket.on('error', () => upstream.destroy());
    upstream.on('error', () => clientSocket.destroy());
    clientSocket.on('close', () => upstream.destroy());
    upstream.on('close', () => clientSocket.destroy());
    upstream.pipe(clientSocket);
    clientSocket.on('data', (chunk: Buffer) => {
      const line = chunk.toString('latin1', 0, Math.min(chunk.length, 300)).split('\r\n')[0];
      if (/^(GET|PUT|POST|DELETE|HEAD) /.test(line)) {
        const index = state.lines.length;
        state.lines.push(line);
        if (!frozen && freezeWhen?.(line, index)) {
          frozen = true;
          process.kill(serverPid, 'SIGSTOP');
          state.frozenAt = `${index}: ${line}`;
        }
      }
      upstream.write(chunk);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.port = (server.address() as net.AddressInfo).port;
  return state;
}

import net from 'node:net';

export interface FreezableProxy {
  port: number;
  freeze(): void;
  thaw(): void;
  /** What a server restart does to its clients: every connection reset now, new ones refused for downMs. */
  cut(downMs: number): void;
  close(): Promise<void>;
}

/** A TCP proxy to host:port whose freeze() stops passing anything on, in either direction, without closing. */
export async function freezableProxy(host: string, port: number): Promise<FreezableProxy> {
  let frozen = false;
  let downUntil = 0;
  const pairs: { client: net.Socket; upstream: net.Socket }[] = [];
  const link = ({ client, upstream }: { client: net.Socket; upstream: net.Socket }) => {
    client.pipe(upstream);
    upstream.pipe(client);
  };
  const hold = ({ client, upstream }: { client: net.Socket; upstream: net.Socket }) => {
    client.unpipe(upstream);
    upstream.unpipe(client);
    client.pause();
    upstream.pause();
  };
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    if (Date.now() < downUntil) {
      client.on('error', () => undefined);
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect({ host, port, allowHalfOpen: true });
    const pair = { client, upstream };
    pairs.push(pair);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    if (frozen) hold(pair);
    else link(pair);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    freeze() {
      frozen = true;
      pairs.forEach(hold);
    },
    thaw() {
      frozen = false;
      for (const pair of pairs) {
        link(pair);
        pair.client.resume();
        pair.upstream.resume();
      }
    },
    cut(downMs) {
      downUntil = Date.now() + downMs;
      for (const { client, upstream } of pairs.splice(0)) {
        client.resetAndDestroy();
        upstream.destroy();
      }
    },
    async close() {
      for (const { client, upstream } of pairs) {
        client.destroy();
        upstream.destroy();
      }
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

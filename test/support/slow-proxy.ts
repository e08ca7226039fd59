import net from 'node:net';

/** A TCP proxy that passes the client's bytes on at `rate` bytes/s (the server's answers go back at once). */
export async function slowProxy(host: string, port: number, rate: number) {
  const sockets: net.Socket[] = [];
  const server = net.createServer((client) => {
    const upstream = net.connect({ host, port });
    sockets.push(client, upstream);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    upstream.pipe(client);
    const queue: Buffer[] = [];
    let queued = 0;
    client.on('data', (chunk: Buffer) => {
      queue.push(chunk);
      queued += chunk.length;
      if (queued > 64 * 1024) client.pause();
    });
    const tick = setInterval(() => {
      let budget = Math.round(rate / 20);
      while (budget > 0 && queue.length) {
        const head = queue[0];
        const part = head.subarray(0, budget);
        if (part.length === head.length) queue.shift();
        else queue[0] = head.subarray(part.length);
        queued -= part.length;
        budget -= part.length;
        upstream.write(part);
      }
      if (queued <= 64 * 1024) client.resume();
    }, 50);
    upstream.on('close', () => clearInterval(tick));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    async close() {
      sockets.forEach((s) => s.destroy());
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

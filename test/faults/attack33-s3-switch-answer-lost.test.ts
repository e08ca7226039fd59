import net from 'node:net';
import { createS3Store } from '../../archive/s3-store';
import { readSegment } from '../../archive/read-segment';
import { readManifest } from '../../archive/manifest';
import { rewriteSegment } from '../../archive/rewrite-segment';
import { writeSegment } from '../../archive/write-segment';
import type { ArchiveRow } from '../../archive/row';
import type { ArchiveStore } from '../../archive/store';
import { collect, plainRow } from '../support/archive';
import { createTestBucket } from '../support/s3';
import { MANIFEST_PUT } from '../support/s3-trigger-proxy';

/**
 * attack33 (9f5342a: "a rewrite refused at its switch deletes its own file").
 *
 * Invariant: no kept row of an archived segment is ever lost; at every moment the manifest names a complete file.
 *
 * Attack: the S3 server carries out the rewrite's conditional manifest PUT (If-Match), but its answer is lost (the
 * connection drops: a load balancer's reset, a NAT timeout). The SDK retries the PUT, as it does any connection reset:
 * the manifest's ETag is now the rewrite's own, so the retry gets 412 and the store reports ArchiveObjectChangedError.
 * The rewrite takes that for "refused" and deletes its new file, the very file the manifest now names: every row of
 * the segment is gone (the old generation was swept or is no longer named).
 * Observed: read "ArchiveObjectNotFoundError: No archive object ...g2-75d6afd4.ndjson.gz": 29 of 29 kept rows lost.
 * Fixed: a switch refused as changed reads the manifest in force; if it names the rewrite's own file (a key no other
 * rewrite has), the switch went through and the rewrite goes on as switched.
 */
jest.setTimeout(60_000);

/** A proxy to the S3 server that, once armed, drops the answer to the first manifest PUT (the server has done it). */
async function answerDroppingProxy(host: string, port: number) {
  let armed = false;
  const dropped: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect({ host, port });
    sockets.add(client).add(upstream);
    let dropAnswer = false;
    client.on('data', (chunk: Buffer) => {
      const line = chunk.toString('latin1').split('\r\n', 1)[0];
      if (armed && MANIFEST_PUT.test(line)) {
        armed = false;
        dropAnswer = true;
        dropped.push(line);
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (dropAnswer) {
        client.destroy();
        upstream.destroy();
        return;
      }
      client.write(chunk);
    });
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    dropped,
    arm: () => (armed = true),
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

let bucket: Awaited<ReturnType<typeof createTestBucket>>;
let proxy: Awaited<ReturnType<typeof answerDroppingProxy>>;
let store: ArchiveStore;
let direct: ArchiveStore;

beforeAll(async () => {
  bucket = await createTestBucket('a33lost');
  const endpoint = new URL(bucket.config.endpoint!);
  proxy = await answerDroppingProxy(endpoint.hostname, Number(endpoint.port));
  store = createS3Store({ ...bucket.config, endpoint: `http://127.0.0.1:${proxy.port}` });
  direct = createS3Store(bucket.config);
});

afterAll(async () => {
  await store?.close();
  await proxy?.close();
  if (direct) {
    for await (const object of direct.list('')) await direct.delete(object.key);
    await direct.close();
  }
  await bucket?.drop();
});

it('a rewrite whose switch the server carried out but whose answer was lost counts as switched; no kept row is lost', async () => {
  const rows: ArchiveRow[] = Array.from({ length: 30 }, (_, i) =>
    plainRow(i + 1, JSON.stringify({ who: i === 0 ? 'erased-subject' : `other-${i}` })),
  );
  const segment = `seg_a33lost_${Date.now().toString(36)}`;
  await writeSegment(store, { segment, table: 'event_journal', rows, expectedRows: rows.length });
  proxy.arm();
  const rewrite = await rewriteSegment(store, segment, (row) =>
    row.payload.includes('erased-subject') ? 'drop' : 'keep',
  ).then(
    (result) => `switched to ${result.manifest.file.key}`,
    (err: Error) => `${err.name}: ${err.message.slice(0, 60)}`,
  );
  const read = await collect(readSegment(direct, segment)).then(
    (got) => `${got.length} rows`,
    (err: Error) => `${err.name}: ${err.message.slice(0, 100)}`,
  );
  // The rewrite reports the switch it made, and the segment holds its 29 kept rows in the file the manifest names.
  const inForce = await readManifest(direct, segment);
  expect({ droppedAnswers: proxy.dropped.length, rewrite, read }).toEqual({
    droppedAnswers: 1,
    rewrite: `switched to ${inForce.file.key}`,
    read: '29 rows',
  });
});

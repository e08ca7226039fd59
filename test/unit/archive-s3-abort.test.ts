import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { PassThrough, Readable } from 'node:stream';
import {
  createS3Store,
  verifySegment,
  withSignal,
  writeSegment,
  type ArchiveStore,
  type SegmentManifest,
} from '../../archive';
import { MockActivityEnvironment } from '@temporalio/testing';
import { activityCancellation } from '../../activities/cancellation';
import { plainRow } from '../support/archive';

/**
 * An S3 server that accepts every request and never answers it (a frozen object store, as a SIGSTOP leaves it): a
 * store call given an aborted signal (the activity's cancellation at a worker's stop) must reject at once, not wait
 * for the server or for the request's own timeout.
 */
let server: http.Server;
let store: ArchiveStore;
const requests: string[] = [];
// GetObject of this key gets its headers and a few bytes, then nothing more: a body that stalls half way.
const STALLING = 'segments/stall/stall.g1.ndjson.gz';

beforeAll(async () => {
  server = http.createServer((req) => {
    requests.push(`${req.method} ${req.url}`);
    if (req.method === 'GET' && req.url?.includes(STALLING)) {
      req.socket.write('HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n');
      req.socket.write(Buffer.alloc(10));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  store = createS3Store({
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    bucket: 'frozen',
    region: 'us-east-1',
    accessKeyId: 'key',
    secretAccessKey: 'secret',
  });
});
afterAll(async () => {
  await store.close();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

/** Runs a store call, aborts its signal once the server has its request, and times how long the call took to end. */
async function abortedAfterRequest(call: (signal: AbortSignal) => Promise<unknown>) {
  const before = requests.length;
  const controller = new AbortController();
  const ended = call(controller.signal).then(
    () => ({ error: undefined as Error | undefined }),
    (error: Error) => ({ error }),
  );
  for (let waited = 0; requests.length === before && waited < 5000; waited += 10) {
    await new Promise((r) => setTimeout(r, 10));
  }
  const abortedAt = Date.now();
  controller.abort();
  const { error } = await ended;
  return { requested: requests.length > before, error: error?.name, tookMs: Date.now() - abortedAt };
}

const calls: Array<[string, (signal: AbortSignal) => Promise<unknown>]> = [
  ['put of a buffer', (signal) => store.put('a/b.json', Buffer.from('{}'), { signal })],
  [
    'put of a stream (multipart upload)',
    (signal) => store.put('a/b.gz', Readable.from([Buffer.alloc(1024)]), { signal }),
  ],
  ['get', (signal) => store.get('a/b.json', { signal })],
  ['stat', (signal) => store.stat('a/b.json', { signal })],
  ['delete', (signal) => store.delete('a/b.json', { signal })],
  [
    'list',
    async (signal) => {
      for await (const object of store.list('a/', { signal })) void object;
    },
  ],
  [
    'reading a body that stalls',
    async (signal) => {
      for await (const chunk of await store.get(STALLING, { signal })) void chunk;
    },
  ],
];

it.each(calls)('%s to a server that never answers rejects as soon as its signal is aborted', async (_name, call) => {
  const result = await abortedAfterRequest(call);
  expect(result).toMatchObject({ requested: true, error: 'AbortError' });
  expect(result.tookMs).toBeLessThan(500);
});

it('a multipart upload whose body is still being produced rejects when aborted, before any request', async () => {
  const body = new PassThrough();
  body.write(Buffer.alloc(1024));
  const controller = new AbortController();
  const put = store.put('a/open.gz', body, { signal: controller.signal }).catch((err: Error) => err);
  await new Promise((r) => setTimeout(r, 100));
  const abortedAt = Date.now();
  controller.abort();
  expect(await put).toMatchObject({ name: 'AbortError' });
  expect(Date.now() - abortedAt).toBeLessThan(500);
  body.destroy();
});

it('archiving a segment through a store seen with a cancelled signal ends at once, having written nothing', async () => {
  const before = requests.length;
  const controller = new AbortController();
  const cancelled = withSignal(store, () => controller.signal);
  const writing = writeSegment(cancelled, { segment: 'frozen', table: 't', rows: [plainRow(1, '{}')] }).catch(
    (err: Error) => err,
  );
  for (let waited = 0; requests.length === before && waited < 5000; waited += 10) {
    await new Promise((r) => setTimeout(r, 10));
  }
  controller.abort();
  const abortedAt = Date.now();
  expect(await writing).toMatchObject({ name: 'AbortError' });
  expect(Date.now() - abortedAt).toBeLessThan(500);
  // Stuck on its first request (is there a manifest already?): no data file and no manifest were sent.
  expect(requests.slice(before).filter((r) => r.startsWith('PUT') || r.startsWith('POST'))).toEqual([]);
});

it('a read-back that fails in the store (not in gunzip) rejects: the segment is not condemned for it', async () => {
  const broken: ArchiveStore = {
    ...store,
    get: async () =>
      new Readable({
        read() {
          this.destroy(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }));
        },
      }),
  };
  const manifest = { segment: 'broken', rows: 1, file: { key: 'segments/broken/broken.g1.ndjson.gz' } };
  await expect(verifySegment(broken, manifest as SegmentManifest)).rejects.toMatchObject({ code: 'ECONNRESET' });
});

it("the activities' archive (activityCancellation) ends a call at the running activity's cancel, and has no signal outside one", async () => {
  const seen = withSignal(store, activityCancellation);
  expect(activityCancellation()).toBeUndefined();
  const env = new MockActivityEnvironment();
  const before = requests.length;
  const listing = env
    .run(async () => {
      for await (const object of seen.list('segments/')) return object;
      return undefined;
    })
    .catch((err: Error) => err);
  for (let waited = 0; requests.length === before && waited < 5000; waited += 10) {
    await new Promise((r) => setTimeout(r, 10));
  }
  expect(requests.length).toBeGreaterThan(before);
  env.cancel();
  const cancelledAt = Date.now();
  expect(await listing).toBeInstanceOf(Error);
  expect(Date.now() - cancelledAt).toBeLessThan(500);
});

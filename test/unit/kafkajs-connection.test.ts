import { EventEmitter } from 'node:events';

/**
 * Two faults of kafkajs 2.2.4 (its last release) that together stalled a consumer group for minutes after members
 * were stopped or killed mid-join (attack26, `test/faults/attack26-ingest-rebalance-stop.test.ts`), and what
 * patches/kafkajs+2.2.4.patch (applied by patch-package at npm install) makes of them:
 * - a Connection reconnected on a new socket still obeyed the old socket's `end`: it rejected the new socket's
 *   requests and disconnected it (a member's JoinGroup dropped on the client while the coordinator kept it);
 * - a SyncGroup gave up after the client's request timeout, while the coordinator may hold it until the group's
 *   rebalance timeout; the member then restarted under a new id and left its old one behind.
 * These drive kafkajs's own modules with fake sockets: no broker needed.
 */
/* eslint-disable @typescript-eslint/no-require-imports -- kafkajs's internals have no typings */
const Connection = require('kafkajs/src/network/connection') as new (options: object) => KafkaConnection;
const ConnectionPool = require('kafkajs/src/network/connectionPool') as new (options: object) => KafkaPool;
const Encoder = require('kafkajs/src/protocol/encoder') as new () => object;
const syncGroupRequests = require('kafkajs/src/protocol/requests/syncGroup') as {
  versions: string[];
  protocol: (args: { version: number }) => (request: object) => { requestTimeout?: number };
};
/* eslint-enable @typescript-eslint/no-require-imports */

interface KafkaPool {
  getConnection(): Promise<KafkaConnection>;
  send(protocol: object): Promise<unknown>;
  destroy(): Promise<void>;
}

interface KafkaConnection {
  connect(): Promise<boolean>;
  disconnect(): Promise<boolean>;
  isConnected(): boolean;
  send(protocol: object): Promise<unknown>;
}

/** A socket that connects at once, records what is written and emits what the test tells it to. */
class FakeSocket extends EventEmitter {
  readonly written: Buffer[] = [];
  write(data: Buffer): boolean {
    this.written.push(data);
    return true;
  }
  end(): void {}
  unref(): void {}
  setKeepAlive(): void {}
}

/** Fake sockets that connect at once, and the options kafkajs's Connection and ConnectionPool take to use them. */
function fakeSockets(requestTimeout: number) {
  const sockets: FakeSocket[] = [];
  const socketFactory = ({ onConnect }: { onConnect: () => void }) => {
    const socket = new FakeSocket();
    sockets.push(socket);
    setImmediate(onConnect);
    return socket;
  };
  const noop = () => undefined;
  const logger = { namespace: () => logger, debug: noop, info: noop, warn: noop, error: noop };
  const options = {
    host: '127.0.0.1',
    port: 1,
    logger: { namespace: () => logger },
    socketFactory,
    connectionTimeout: 1000,
    requestTimeout,
    enforceRequestTimeout: requestTimeout < 60_000,
  };
  return { sockets, options };
}

function fakeConnection(): { connection: KafkaConnection; sockets: FakeSocket[] } {
  const { sockets, options } = fakeSockets(60_000);
  return { connection: new Connection(options), sockets };
}

/** A request the fake never answers: it stays pending until the connection rejects it. */
function pendingRequest(connection: Pick<KafkaConnection, 'send'>): Promise<string> {
  const request = { apiKey: 18, apiVersion: 0, apiName: 'ApiVersions', encode: async () => new Encoder() };
  return connection.send({ request, response: { decode: noopDecode, parse: noopDecode } }).then(
    () => 'answered',
    (err: Error) => `rejected: ${err.message}`,
  );
}
const noopDecode = async () => ({});

/** The request's outcome, or 'pending' when it has none after `ms` (the timer cleared either way). */
async function settledWithin(promise: Promise<string>, ms: number): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<string>((resolve) => (timer = setTimeout(resolve, ms, 'pending'))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

describe('kafkajs Connection with a replaced socket', () => {
  it("ignores the old socket's end: the new socket's request stays pending and the connection stays up", async () => {
    const { connection, sockets } = fakeConnection();
    await connection.connect();
    await connection.disconnect();
    await connection.connect();
    expect(sockets).toHaveLength(2);
    const request = pendingRequest(connection);
    for (let i = 0; i < 100 && sockets[1].written.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(sockets[1].written.length).toBeGreaterThan(0);
    sockets[0].emit('end');
    sockets[0].emit('error', new Error('old socket reset'));
    expect(await settledWithin(request, 100)).toBe('pending');
    expect(connection.isConnected()).toBe(true);
    // Its own socket's end still closes it and rejects what it has in flight.
    sockets[1].emit('end');
    expect(await settledWithin(request, 1000)).toBe('rejected: Closed connection');
    expect(connection.isConnected()).toBe(false);
  });
});

describe('kafkajs Connection with concurrent connects', () => {
  // The pool's sends reconnect outside any lock: ingest commits offsets of several partitions at once after the
  // coordinator's connection closed. With the replaced-socket guard, the first of two concurrent connects was left
  // pending forever, its send neither written nor timed out (attack27). They now share one attempt and one socket.
  it('two sends that must reconnect at once are both written on one socket, and both time out', async () => {
    const { sockets, options } = fakeSockets(2000);
    const pool = new ConnectionPool(options);
    try {
      const connection = await pool.getConnection();
      sockets[0].emit('end');
      for (let i = 0; i < 100 && connection.isConnected(); i++) await new Promise((r) => setTimeout(r, 10));
      expect(connection.isConnected()).toBe(false);
      const [first, second] = await Promise.all(
        [pendingRequest(pool), pendingRequest(pool)].map((request) => settledWithin(request, 5000)),
      );
      expect({ sockets: sockets.length, written: sockets[1].written.length, first, second }).toEqual({
        sockets: 2,
        written: 2,
        first: expect.stringMatching(/^rejected: .*timed out/),
        second: expect.stringMatching(/^rejected: .*timed out/),
      });
    } finally {
      await pool.destroy();
    }
  });
});

describe('kafkajs SyncGroup request timeout', () => {
  const request = { groupId: 'g', generationId: 1, memberId: 'm', groupAssignment: [], groupInstanceId: null };

  it.each(syncGroupRequests.versions.map(Number))(
    'v%i waits the rebalance timeout plus 5 s, as JoinGroup does',
    (version) => {
      const build = syncGroupRequests.protocol({ version });
      expect(build({ ...request, sessionTimeout: 30_000, rebalanceTimeout: 60_000 }).requestTimeout).toBe(65_000);
      expect(build({ ...request, sessionTimeout: 30_000 }).requestTimeout).toBe(35_000);
      expect(build(request).requestTimeout).toBeUndefined();
    },
  );
});

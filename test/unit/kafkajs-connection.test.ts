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
const Encoder = require('kafkajs/src/protocol/encoder') as new () => object;
const syncGroupRequests = require('kafkajs/src/protocol/requests/syncGroup') as {
  versions: string[];
  protocol: (args: { version: number }) => (request: object) => { requestTimeout?: number };
};
/* eslint-enable @typescript-eslint/no-require-imports */

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

function fakeConnection(): { connection: KafkaConnection; sockets: FakeSocket[] } {
  const sockets: FakeSocket[] = [];
  const socketFactory = ({ onConnect }: { onConnect: () => void }) => {
    const socket = new FakeSocket();
    sockets.push(socket);
    setImmediate(onConnect);
    return socket;
  };
  const noop = () => undefined;
  const logger = { namespace: () => logger, debug: noop, info: noop, warn: noop, error: noop };
  const connection = new Connection({
    host: '127.0.0.1',
    port: 1,
    logger: { namespace: () => logger },
    socketFactory,
    connectionTimeout: 1000,
    requestTimeout: 60_000,
    enforceRequestTimeout: false,
  });
  return { connection, sockets };
}

/** A request the fake never answers: it stays pending until the connection rejects it. */
function pendingRequest(connection: KafkaConnection): Promise<string> {
  const request = { apiKey: 18, apiVersion: 0, apiName: 'ApiVersions', encode: async () => new Encoder() };
  return connection.send({ request, response: { decode: noopDecode, parse: noopDecode } }).then(
    () => 'answered',
    (err: Error) => `rejected: ${err.message}`,
  );
}
const noopDecode = async () => ({});

const settledWithin = (promise: Promise<string>, ms: number) =>
  Promise.race([promise, new Promise<string>((resolve) => setTimeout(() => resolve('pending'), ms))]);

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

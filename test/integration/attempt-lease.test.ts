import { Context } from '@temporalio/activity';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { askServerOf, beatDetails, HEARTBEAT_THROTTLE_MS, leaseAttempt } from '../../worker/attempt-lease';
import { baseConfig, uniqueSuffix } from '../support/env';

/**
 * An attempt's lease (worker/attempt-lease.ts) against the real Temporal dev server, through the worker's own client:
 * the server records a stamped heartbeat and the lease grows from that heartbeat's making by the heartbeat timeout
 * less 5 s; once the worker's heartbeats stop reaching the server (they are dropped here, as for a worker cut off from
 * Temporal) the server times the attempt out and starts the retry, and the old attempt learns it from the server's
 * answer, not from the SDK; the retry reads the details out of their envelope.
 */

const HEARTBEAT_TIMEOUT_MS = 10_000;

const config = baseConfig();
const taskQueue = `lease-probe-${uniqueSuffix()}`;
let connection: NativeConnection;
let worker: Worker;
let running: Promise<void>;
let client: Client;
const seen: Record<string, unknown> = {};

async function leaseProbe(): Promise<unknown> {
  const ctx = Context.current();
  if (ctx.info.attempt > 1) {
    // Pending while attempt 1 asks the server about itself.
    for (let waited = 0; seen.ended === undefined && waited < 30_000; waited += 100) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const raw = ctx.info.heartbeatDetails as { crmEventsBeat?: unknown } | undefined;
    return { attempt: ctx.info.attempt, details: beatDetails(raw), stamp: raw?.crmEventsBeat };
  }
  let cut = false;
  const leased = leaseAttempt(ctx, (details) => cut || ctx.heartbeat(details), askServerOf(ctx)!);
  leased.heartbeat({ cursor: 41 });
  // The hold stamps the last details (its first send would), makes that heartbeat and asks the server.
  const before = performance.now();
  await leased.lease.hold(2_000);
  const after = performance.now();
  // The lease counts from that heartbeat's making (between `before` and `after`): 10 s less the 5 s margin.
  seen.leaseFromMaking = [leased.lease.until() - after, leased.lease.until() - before];
  // Cut off: no heartbeat reaches the server any more; the server times the attempt out at 10 s.
  cut = true;
  await new Promise((resolve) => setTimeout(resolve, HEARTBEAT_TIMEOUT_MS + 3_000));
  seen.cancelledBySdk = ctx.cancellationSignal.aborted;
  seen.hold = await leased.lease.hold(2_000).then(
    () => 'held',
    (err: Error) => err.message,
  );
  seen.ended = leased.signal.aborted;
  throw new Error('attempt 1 over');
}

beforeAll(async () => {
  connection = await NativeConnection.connect({ address: config.temporal.address });
  worker = await Worker.create({
    connection,
    namespace: config.temporal.namespace,
    taskQueue,
    workflowsPath: require.resolve('../support/workflows/lease-probe'),
    activities: { leaseProbe },
    // As the replay worker: a heartbeat reaches the server within a second of its making.
    maxHeartbeatThrottleInterval: HEARTBEAT_THROTTLE_MS,
  });
  running = worker.run();
  client = new Client({
    connection: await Connection.connect({ address: config.temporal.address }),
    namespace: config.temporal.namespace,
  });
});

afterAll(async () => {
  worker?.shutdown();
  await running;
  await connection?.close();
  await client?.connection.close();
});

it('grows only from heartbeats the server recorded, and ends an attempt the server timed out while cut off', async () => {
  const result = await client.workflow.execute('leaseProbeWorkflow', {
    taskQueue,
    workflowId: `lease-probe-${uniqueSuffix()}`,
  });
  expect(seen).toEqual({
    leaseFromMaking: [expect.any(Number), expect.any(Number)],
    cancelledBySdk: false,
    hold: 'Attempt 1 was ended by the Temporal server (attempt 2 is pending)',
    ended: true,
  });
  const [fromAfter, fromBefore] = seen.leaseFromMaking as number[];
  expect({ fromAfter: fromAfter <= 5_000, fromBefore: fromBefore >= 5_000 }).toEqual({
    fromAfter: true,
    fromBefore: true,
  });
  expect(result).toEqual({ attempt: 2, details: { cursor: 41 }, stamp: { attempt: 1, n: expect.any(Number) } });
});

import { spawn } from 'node:child_process';

/**
 * kafkajs 2.2.4 (its last release) can spin forever on microtasks, starving the event loop: no timer, no socket, no
 * /metrics, no watchdog ever runs again. The cluster fault suite found an ingest process so, after the watchdog
 * disconnected a stalled consumer right when a killed broker changed the cluster's node ids: the fetch manager was
 * rebuilding its fetchers for the new node ids (KafkaJSFetcherRebalanceError) when the runner stopped it; it then
 * created fresh fetchers nobody would stop, and their loop called the runner's fetch, which answers [] at once once
 * the runner is no longer running. patches/kafkajs+2.2.4.patch (applied by patch-package at npm install) makes the
 * fetch manager honour a stop that came during that rebuild, and a fetcher yield to the event loop after a fetch that
 * brought nothing.
 *
 * The scenario drives kafkajs's own fetch manager in a child process: a starved event loop would starve this test's
 * timeout too, so the parent kills the child after a bound and reports what it printed.
 */
const SCENARIO = String.raw`
const createFetchManager = require('kafkajs/src/consumer/fetchManager');
const logger = { namespace: () => logger, debug() {}, info() {}, warn() {}, error() {} };
let running = true;
let nodeIds = [1, 2];
const manager = createFetchManager({
  logger,
  getNodeIds: () => nodeIds,
  // As the runner's fetch: nothing at once once stopped; otherwise a fetch that takes a while (node 1 longer).
  fetch: async (nodeId) => (running ? new Promise((r) => setTimeout(() => r([]), nodeId === 1 ? 300 : 5)) : []),
  handler: async () => undefined,
});
const started = manager.start().then(() => console.log('start resolved'), (e) => console.log('start failed ' + e.name));
// A broker gone, another in its place: node 2's fetcher throws the rebalance error at its next fetch, and the manager
// waits for node 1's fetcher to end before it builds new fetchers ...
setTimeout(() => (nodeIds = [1, 3]), 50);
// ... when the runner stops (consumer.disconnect): running false, then the manager's stop.
setTimeout(async () => {
  running = false;
  await manager.stop();
  console.log('stopped');
  setTimeout(async () => {
    console.log('timer fired');
    await Promise.race([started, new Promise((r) => setTimeout(r, 1000))]);
    process.exit(0);
  }, 500);
}, 120);
`;

function runScenario(boundMs: number): Promise<{ out: string; killed: boolean }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['-e', SCENARIO], { cwd: process.cwd(), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), boundMs);
    child.on('exit', (_code, signal) => {
      clearTimeout(timer);
      resolve({ out, killed: signal === 'SIGKILL' });
    });
  });
}

it('a stop during a fetcher rebalance ends the fetch manager and leaves the event loop free', async () => {
  const { out, killed } = await runScenario(15_000);
  expect({ killed, lines: out.trim().split('\n') }).toEqual({
    killed: false,
    lines: expect.arrayContaining(['stopped', 'timer fired', 'start resolved']) as string[],
  });
}, 30_000);

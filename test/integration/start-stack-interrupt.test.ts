import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { uniqueSuffix } from '../support/env';
import { exited } from '../support/ingest-process';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';

/**
 * Invariant 5 at the first step of `npm start`: Ctrl-C while `start --stack` is still bringing the local stack up
 * (the stack already running, so healthy) stops the process with exit 0. Ctrl-C reaches the whole foreground process
 * group, so scripts/stack.sh, which `start --stack` runs as a child, is interrupted by the same signal; the service
 * used to take that for a failed stack and exit 1 with a fatal "stack up exited with null" (2 of 2 runs of `npm start`
 * interrupted in that step, /tmp/shut-runs r09 and r13).
 *
 * The real CLI and the real stack script; the test signals the child's process group, as a terminal does.
 */
let h: SinkHarness;
let child: ChildProcess | undefined;

beforeAll(async () => {
  h = await createSinkHarness('start-interrupt');
});
afterAll(async () => {
  if (child?.pid && child.exitCode === null) process.kill(-child.pid, 'SIGKILL');
  await h?.close();
});

it('Ctrl-C while `start --stack` brings the stack up exits 0, without a fatal error', async () => {
  const queue = `start-interrupt-${uniqueSuffix()}`;
  child = spawn(process.execPath, [path.resolve(__dirname, '../../dist/cli/main.js'), 'start', '--stack'], {
    env: {
      ...process.env,
      LOG_LEVEL: 'info',
      DATABASE_URL: h.databaseUrl,
      KAFKA_TOPICS: h.config.kafka.topics.join(','),
      KAFKA_GROUP_ID: h.config.kafka.groupId,
      TEMPORAL_TASK_QUEUE: queue,
      DLQ_RETRY_SCHEDULE_ID: `${queue}-dlq-retry`,
      MAINTENANCE_SCHEDULE_ID: `${queue}-maintenance`,
      API_PORT: '0',
      METRICS_PORT: '0',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // its own process group, which the test then interrupts as a whole
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  // scripts/stack.sh checks postgres first and s3 last: interrupted between the two, it is still running.
  await eventually(async () => stderr.includes('postgres: already up'), 'stack.sh checking the stack', 60_000);
  process.kill(-child.pid!, 'SIGINT');
  const code = await exited(child);

  expect(stderr).not.toContain('s3: already up'); // the signal came while the stack was being brought up
  const lines = stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { level: string; msg: string });
  expect({ code, signal: child.signalCode, fatal: lines.filter((l) => ['error', 'fatal'].includes(l.level)) }).toEqual({
    code: 0,
    signal: null,
    fatal: [],
  });
}, 120_000);

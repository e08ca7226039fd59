import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../../bench/support/ports';
import { uniqueSuffix } from '../support/env';
import { exited, spawnCli } from '../support/ingest-process';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';
import { deleteSchedule } from '../support/temporal';

/**
 * Issue 11, point 8: TLS and HTTP/2. One real `crm-events-sink start` process (as `npm start` runs it) with
 * API_TLS=self-signed; curl, the CLI and the live stream talk to it over HTTP/2 and over HTTP/1.1 on the same port.
 */
jest.setTimeout(120_000);

const run = promisify(execFile);
const CLI = path.resolve(__dirname, '../../dist/cli/main.js');
const queue = `api-tls-${uniqueSuffix()}`;
const scheduleId = `${queue}-dlq-retry`;
let h: SinkHarness;
let tlsDir: string;
let cert: string;
let base: string;
let service: ChildProcess | undefined;
let stderr = '';

beforeAll(async () => {
  h = await createSinkHarness('api-tls');
  tlsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'api-tls-'));
  cert = path.join(tlsDir, 'cert.pem');
  const port = await freePort();
  base = `https://127.0.0.1:${port}`;
  service = spawnCli('start', {
    DATABASE_URL: h.databaseUrl,
    KAFKA_TOPICS: h.config.kafka.topics.join(','),
    KAFKA_GROUP_ID: h.config.kafka.groupId,
    TEMPORAL_TASK_QUEUE: queue,
    DLQ_RETRY_SCHEDULE_ID: scheduleId,
    MAINTENANCE_SCHEDULE_ID: `${scheduleId}-maintenance`,
    API_HOST: '127.0.0.1',
    API_PORT: String(port),
    API_TLS: 'self-signed',
    API_TLS_DIR: tlsDir,
    AUTH_JWT_SECRET: '',
    AUTH_MODE: '',
  });
  service.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  await eventually(async () => stderr.includes('crm-events-sink is running:'), 'the start banner', 90_000);
});

afterAll(async () => {
  service?.kill('SIGKILL');
  await deleteSchedule(h.config.temporal.address, scheduleId);
  await deleteSchedule(h.config.temporal.address, `${scheduleId}-maintenance`);
  await h?.close();
  fs.rmSync(tlsDir, { recursive: true, force: true });
});

/** curl's `-w` answer for one request: "<HTTP version> <status>". */
async function curlVersion(...args: string[]): Promise<string> {
  const { stdout } = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_version} %{http_code}', ...args]);
  return stdout;
}

/** A live-stream client that is curl itself: stdout is the SSE body, stderr (-v) the response head. */
function curlStream(protocol: '--http2' | '--http1.1', query: string, ...extra: string[]) {
  const child = spawn('curl', [protocol, '-k', '-sS', '-N', '-v', ...extra, `${base}/crm-events${query}`]);
  const got = { body: '', head: '', child };
  child.stdout.on('data', (chunk: Buffer) => (got.body += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (got.head += chunk.toString()));
  return got;
}

/** The domain events in an SSE body. */
const domainEvents = (body: string) =>
  [...body.matchAll(/^data: (.*)$/gm)]
    .map((m) => JSON.parse(m[1]) as { kind: string; payload: { ref?: string } })
    .filter((frame) => frame.kind === 'domain_event');

it('npm start makes a self-signed certificate and says TLS and HTTP/2 are on, with the https:// URL', () => {
  expect(stderr).toContain(`  API            ${base}   (docs: /docs`);
  expect(stderr).toContain('  TLS / HTTP/2   on: HTTPS, HTTP/2 negotiated by ALPN (HTTP/1.1 for clients without it)');
  expect(stderr).toContain(`certificate ${cert} (self-signed for localhost, 127.0.0.1, ::1)`);
  expect(stderr).toContain(`CLI: CRM_EVENTS_API_URL=${base} NODE_EXTRA_CA_CERTS=${cert}`);
  expect(fs.readdirSync(tlsDir).sort()).toEqual(['cert.pem', 'key.pem']);
});

it('negotiates HTTP/2 with curl, verified against the certificate it made, and still serves HTTP/1.1', async () => {
  expect(await curlVersion('--http2', '--cacert', cert, `${base}/health`)).toBe('2 200');
  expect(await curlVersion('--http2', '-k', `https://localhost:${new URL(base).port}/health`)).toBe('2 200');
  expect(await curlVersion('--http1.1', '--cacert', cert, `${base}/health`)).toBe('1.1 200');
  // Plain HTTP on the TLS port gets no answer it could mistake for the API's.
  await expect(curlVersion(`http://127.0.0.1:${new URL(base).port}/health`)).rejects.toThrow();
});

it.each([
  ['--http2', 'HTTP/2 200'],
  ['--http1.1', 'HTTP/1.1 200'],
] as const)('streams events journaled meanwhile as SSE frames over %s', async (protocol, status) => {
  const topic = h.topics.leads;
  const stream = curlStream(protocol, `?topic=${encodeURIComponent(topic)}`);
  try {
    await eventually(async () => stream.body.includes('"kind":"connected"'), 'the connected frame');
    const refs = [1, 2, 3].map((i) => `${protocol}-${i}-${uniqueSuffix()}`);
    await h.send(
      topic,
      refs.map((ref) => ({ tenant_id: 'acme', ref })),
    );
    await eventually(
      async () => refs.every((ref) => domainEvents(stream.body).some((e) => e.payload.ref === ref)),
      `the ${refs.length} events as SSE frames over ${protocol}`,
    );
    expect(stream.head).toContain(`< ${status}`);
    expect(stream.head).toMatch(/^< content-type: text\/event-stream/im);
    // HTTP/2 forbids connection-specific headers: the route sends `connection` over HTTP/1.1 only.
    if (protocol === '--http2') expect(stream.head).not.toMatch(/^< connection:/im);
    else expect(stream.head).toMatch(/^< connection: keep-alive/im);
  } finally {
    stream.child.kill();
  }
  expect(stderr).not.toMatch(/connection header is not valid/);
});

it('the CLI talks to the HTTPS API once told to trust its certificate, and says how when not', async () => {
  const cli = (env: Record<string, string>) =>
    run(process.execPath, [CLI, 'dlq', 'list'], {
      env: { ...process.env, CRM_EVENTS_API_URL: base, LOG_LEVEL: 'warn', ...env },
      timeout: 30_000,
    });
  const { stdout } = await cli({ NODE_EXTRA_CA_CERTS: cert });
  expect(stdout).toContain('DLQ is empty for this filter');

  const refused = await cli({ NODE_EXTRA_CA_CERTS: '' }).catch((err: { code: number; stderr: string }) => err);
  expect(refused).toMatchObject({ code: 1 });
  expect((refused as { stderr: string }).stderr).toContain(
    `error: Cannot reach the API at ${base} (fetch failed: self-signed certificate; trust the API's certificate with NODE_EXTRA_CA_CERTS`,
  );
});

it('stops on SIGTERM with live streams open over both protocols, and keeps the certificate for the next start', async () => {
  // Browsers and node's fetch ask HTTP/1.1 connections to be kept alive; curl does not unless told.
  const streams = [
    curlStream('--http2', ''),
    curlStream('--http1.1', ''),
    curlStream('--http1.1', '', '-H', 'Connection: keep-alive'),
  ];
  for (const stream of streams) {
    await eventually(async () => stream.body.includes('"kind":"connected"'), 'the connected frame');
  }
  const made = fs.readFileSync(cert);
  service!.kill('SIGTERM');
  expect(await exited(service!)).toBe(0);
  service = undefined;
  // Every stream was ended, not dropped: curl exits 0 only when the response ended properly.
  expect(await Promise.all(streams.map((stream) => exited(stream.child)))).toEqual([0, 0, 0]);
  expect(stderr).not.toMatch(/did not finish within/);

  // `api` alone on the same directory: the cached pair is served, not a new one.
  const port = await freePort();
  const again = spawnCli('api', {
    DATABASE_URL: h.databaseUrl,
    KAFKA_TOPICS: h.config.kafka.topics.join(','),
    API_PORT: String(port),
    API_TLS: 'self-signed',
    API_TLS_DIR: tlsDir,
  });
  try {
    await eventually(
      async () => (await curlVersion('--http2', '--cacert', cert, `https://127.0.0.1:${port}/healthz`)) === '2 200',
      'the restarted API to answer over HTTP/2 with the same certificate',
    );
    expect(fs.readFileSync(cert).equals(made)).toBe(true);
  } finally {
    again.kill('SIGTERM');
    await exited(again);
  }
});

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { freePort } from '../../bench/support/ports';
import { exited, spawnCli } from '../support/ingest-process';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';

/**
 * attack22: SIGTERM to an `api` process serving HTTPS with HTTP/2 (API_TLS=self-signed, or API_TLS_CERT/API_TLS_KEY)
 * while a client is still on it.
 *
 * Invariant (brief; docs/integrity.md "Shutdown": "The separate `ingest` and `api` processes of a deployment stay
 * within it"): the api process exits 0 within SHUTDOWN_TIMEOUT (30 s) on SIGTERM, at any moment.
 *
 * Attack: buildApp sets forceCloseConnections: true ("live-stream clients would otherwise hold close() open"). Over
 * plain HTTP/1.1 fastify then calls server.closeAllConnections() and the same two clients below leave at once (live:
 * exit 0 in 0.06 s). The TLS server is an http2 secure server (allowHTTP1), which has no closeAllConnections: fastify
 * destroys only the sockets it tracked as keep-alive connections, so
 * - an export (GET /events/export) that an HTTP/2 client downloads slowly, and
 * - an HTTP/1.1-over-TLS connection whose request has begun and not finished
 * each hold app.close() open, and the stop ends at SHUTDOWN_TIMEOUT with exit 1: "Shutdown did not finish within
 * 30000 ms: api was still stopping; exiting" (live: exit 1 after 30.0 s, both cases).
 */
jest.setTimeout(120_000);

let h: SinkHarness;
let tlsDir: string;

beforeAll(async () => {
  h = await createSinkHarness('a22apitls');
  tlsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'a22-api-tls-'));
  // Enough journal for an export of a few megabytes: a slow client is still downloading it when the stop comes.
  await h.pool.query(
    `INSERT INTO event_journal (tenant_id, topic, payload)
     SELECT 'acme', $1, jsonb_build_object('tenant_id', 'acme', 'n', n, 'pad', repeat('x', 1000))
     FROM generate_series(1, 3000) AS n`,
    [h.config.kafka.topics[0]],
  );
}, 60_000);

afterAll(async () => {
  await h?.close();
  fs.rmSync(tlsDir, { recursive: true, force: true });
});

async function startApi(): Promise<{ api: ChildProcess; port: number; stdout: () => string }> {
  const port = await freePort();
  const api = spawnCli('api', {
    DATABASE_URL: h.databaseUrl,
    KAFKA_TOPICS: h.config.kafka.topics.join(','),
    KAFKA_GROUP_ID: h.config.kafka.groupId,
    API_HOST: '127.0.0.1',
    API_PORT: String(port),
    API_TLS: 'self-signed',
    API_TLS_DIR: tlsDir,
    AUTH_JWT_SECRET: '',
    AUTH_MODE: '',
    LOG_LEVEL: 'info',
  });
  let stdout = '';
  api.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  await eventually(async () => stdout.includes('Server listening at https://'), 'the API listening', 60_000);
  return { api, port, stdout: () => stdout };
}

/** SIGTERMs the process: its exit code, whether within SHUTDOWN_TIMEOUT, and its give-up line if any. */
async function sigterm(child: ChildProcess, stdout: () => string) {
  const signalled = Date.now();
  child.kill('SIGTERM');
  const code = await Promise.race([exited(child), new Promise((r) => setTimeout(() => r('running'), 45_000))]);
  const tookMs = Date.now() - signalled;
  const shutdownLine = stdout()
    .split('\n')
    .find((line) => line.includes('Shutdown did not finish'))
    ?.match(/"msg":"([^"]*)"/)?.[1];
  return { code, withinShutdownTimeout: tookMs < 30_000, shutdownLine };
}

const STOPPED_IN_TIME = { code: 0, withinShutdownTimeout: true, shutdownLine: undefined };

it('SIGTERM while an HTTP/2 client downloads an export slowly: exits 0 within SHUTDOWN_TIMEOUT', async () => {
  const { api, port, stdout } = await startApi();
  const download = spawn('curl', [
    '-k',
    '-sS',
    '-N',
    '--http2',
    '--limit-rate',
    '2k',
    '-o',
    '/dev/null',
    `https://127.0.0.1:${port}/events/export`,
  ]);
  try {
    await new Promise((r) => setTimeout(r, 2000)); // the export is streaming, far from done at 2 KB/s
    expect(download.exitCode).toBeNull();
    // Before: { code: 1, withinShutdownTimeout: false, shutdownLine: '... api was still stopping; exiting' }
    expect(await sigterm(api, stdout)).toEqual(STOPPED_IN_TIME);
  } finally {
    download.kill('SIGKILL');
    api.kill('SIGKILL');
    await exited(api);
  }
});

it('SIGTERM while an HTTP/1.1-over-TLS client has sent half a request: exits 0 within SHUTDOWN_TIMEOUT', async () => {
  const { api, port, stdout } = await startApi();
  const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] });
  socket.on('error', () => undefined);
  try {
    await new Promise<void>((resolve) => socket.once('secureConnect', () => resolve()));
    socket.write('GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n'); // no blank line: the request has not ended
    await new Promise((r) => setTimeout(r, 500));
    expect(await sigterm(api, stdout)).toEqual(STOPPED_IN_TIME);
  } finally {
    socket.destroy();
    api.kill('SIGKILL');
    await exited(api);
  }
});

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../../bench/support/ports';
import { exited, spawnCli, untilPrinted } from '../support/ingest-process';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';
import { curl } from '../support/curl';
import { uniqueSuffix } from '../support/env';

/**
 * attack27 (fix 2, efbc88d + b7da101): SIGTERM to an `api` process while a POST /replay/range with dry_run:true is in
 * flight, its workflow started and its replay_audit row written, the handler waiting for the dry run's result (no
 * worker polls the task queue here: a busy or restarting worker, the normal case for a rolling restart).
 *
 * Invariant: a request other than GET/HEAD/OPTIONS in flight at SIGTERM gets a complete HTTP response before the
 * connections drop (answer-at-close.ts); the routes that wait for a workflow's result end that wait at close and
 * answer with the workflow id. Nothing of the request's own is frozen here: Temporal, Postgres are up.
 *
 * Attack: api/routes/replay.ts answers a dry run with `return handle.result()`, a wait that is not
 * `reply.workflowResult` (not bounded by API_REPLAY_WAIT_MS, not ended by the close's abort). answer-at-close's preClose
 * waits its 2 s grace for that answer, which never comes, then fastify's closeAllConnections (plain HTTP) or
 * close-connections.ts (TLS) drops the connection.
 *
 * Observed live (SHUTDOWN_TIMEOUT=10s, two runs): the API exits 0 (4.02 s after the signal over http, 4.52 s over
 * https: the 2 s grace, then the 2 s after-stop wait for the handler's still open result poll), the workflow was
 * started and its audit row written, and curl gets no response: http_code 000, curl exit 52 (empty reply) over
 * HTTP/1.1, curl exit 18 (partial transfer) over TLS/HTTP2. The client never learns the workflow id of the dry run
 * it caused (its retry starts a second one).
 */
jest.setTimeout(120_000);

const SHUTDOWN_TIMEOUT_MS = 10_000;
let h: SinkHarness;
let tlsDir: string;

beforeAll(async () => {
  h = await createSinkHarness('a27apirange');
  tlsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'a27-api-range-'));
}, 60_000);

afterAll(async () => {
  await h?.close();
  fs.rmSync(tlsDir, { recursive: true, force: true });
});

async function rangeAuditRows(since: Date): Promise<number> {
  const { rows } = await h.pool.query<{ n: string }>(
    `SELECT count(*) AS n FROM replay_audit WHERE kind = 'range' AND created_at >= $1`,
    [since],
  );
  return Number(rows[0].n);
}

it.each([['http'], ['https']])(
  'SIGTERM while a POST /replay/range dry run waits for its workflow (%s): the client gets an answer, not a reset',
  async (scheme) => {
    const port = await freePort();
    const queue = `a27-apirange-${uniqueSuffix()}`;
    const api = spawnCli('api', {
      DATABASE_URL: h.databaseUrl,
      KAFKA_TOPICS: h.config.kafka.topics.join(','),
      KAFKA_GROUP_ID: h.config.kafka.groupId,
      TEMPORAL_TASK_QUEUE: queue,
      API_HOST: '127.0.0.1',
      API_PORT: String(port),
      ...(scheme === 'https' ? { API_TLS: 'self-signed', API_TLS_DIR: tlsDir } : { API_TLS: '' }),
      AUTH_JWT_SECRET: '',
      AUTH_MODE: '',
      API_REPLAY_WAIT_MS: '20000',
      SHUTDOWN_TIMEOUT: `${SHUTDOWN_TIMEOUT_MS}ms`,
      LOG_LEVEL: 'info',
    });
    try {
      await untilPrinted(api, `Server listening at ${scheme}://`);
      const since = new Date(Date.now() - 1000);
      const before = await rangeAuditRows(since);
      const url = `${scheme}://127.0.0.1:${port}/replay/range`;
      const body = JSON.stringify({
        start: '2020-01-01T00:00:00Z',
        end: '2020-01-02T00:00:00Z',
        topic: h.topics.leads,
        dry_run: true,
      });
      const request = curl([
        '-X',
        'POST',
        '-H',
        'X-Requested-By: attack27',
        '-H',
        'Content-Type: application/json',
        '--data',
        body,
        url,
      ]);
      // Started: the workflow runs (nobody polls its queue) and its audit row is written; the handler now waits.
      await eventually(async () => (await rangeAuditRows(since)) === before + 1, 'the dry run started', 20_000);
      await new Promise((r) => setTimeout(r, 300));
      const signalled = Date.now();
      api.kill('SIGTERM');
      const code = await Promise.race([exited(api), new Promise((r) => setTimeout(() => r('running'), 30_000))]);
      const tookMs = Date.now() - signalled;
      const answer = await request;
      const status = answer.out.match(/HTTP (\d+)$/)?.[1];
      console.log(
        `${scheme}: api exit ${String(code)} after ${tookMs} ms; curl exit ${answer.exit} status ${status}: ${answer.out}`,
      );
      expect({ code, inTime: tookMs < SHUTDOWN_TIMEOUT_MS }).toEqual({ code: 0, inTime: true });
      expect({ curlExit: answer.exit, answered: status !== '000' }).toEqual({ curlExit: 0, answered: true });
      expect(answer.out).toContain('"workflow_id"');
    } finally {
      api.kill('SIGKILL');
      await exited(api);
    }
  },
);

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../../bench/support/ports';
import { exited, spawnCli, untilPrinted } from '../support/ingest-process';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';
import { curl } from '../support/curl';
import { uniqueSuffix } from '../support/env';

/**
 * attack26 (I3): SIGTERM to an `api` process while a POST /replay/:id is in flight AFTER its replay was accepted
 * (workflow started in Temporal, replay_audit row written) and the handler is waiting up to API_REPLAY_WAIT_MS for
 * the workflow's result (no worker polls the task queue here: a busy or restarting worker, the normal case for a
 * rolling restart of the whole service).
 *
 * Invariant (brief I3): abandoning things early at a stop must do no harm; in particular the API stop must not drop a
 * response that was fully decided: the replay was accepted, so the client must get the 202 {status: accepted,
 * workflow_id} the route answers once API_REPLAY_WAIT_MS runs out, and not a connection reset. With a reset the
 * client cannot know the replay started (no workflow id) and its retry (no Idempotency-Key: the route does not ask
 * for one) starts a second replay of the same event.
 *
 * Attack: api/app.ts sets forceCloseConnections: true, so app.close() calls server.closeAllConnections() at once
 * (plain HTTP), and over TLS close-connections.ts destroys every socket 0.5 s after the close; neither ends the
 * handler's wait early with the 202 it would send. The handler goes on to nowhere.
 *
 * Observed live (SHUTDOWN_TIMEOUT=10s, API_REPLAY_WAIT_MS=20000): the process exits 0 (2.02 s after the signal over
 * plain HTTP, 2.52 s over TLS: the after-stop wait, the handler still holding the Temporal client), the audit row and
 * the workflow exist (accepted), and curl gets no response at all: http_code 000, curl exit 52 ("Empty reply from
 * server") over plain HTTP, curl exit 18 (partial transfer) over TLS/HTTP2. Reproduced on two runs.
 */
jest.setTimeout(120_000);

const SHUTDOWN_TIMEOUT_MS = 10_000;
let h: SinkHarness;
let tlsDir: string;
let eventId: string;

beforeAll(async () => {
  h = await createSinkHarness('a26apireset');
  tlsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'a26-api-reset-'));
  const { rows } = await h.pool.query<{ id: string }>(
    `INSERT INTO event_journal (tenant_id, topic, payload)
     VALUES ('acme', $1, '{"tenant_id":"acme","n":1}'::jsonb) RETURNING id`,
    [h.topics.leads],
  );
  eventId = rows[0].id;
}, 60_000);

afterAll(async () => {
  await h?.close();
  fs.rmSync(tlsDir, { recursive: true, force: true });
});

it.each([['http'], ['https']])(
  'SIGTERM while an accepted POST /replay/:id waits for its result (%s): the client gets the 202, not a reset',
  async (scheme) => {
    const port = await freePort();
    const queue = `a26-apireset-${uniqueSuffix()}`;
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
      const before = await auditRows();
      const url = `${scheme}://127.0.0.1:${port}/replay/${eventId}`;
      const request = curl(['-X', 'POST', '-H', 'X-Requested-By: attack26', url]);
      // Accepted: the workflow started and its audit row is written; the handler now waits for the result.
      await eventually(async () => (await auditRows()) === before + 1, 'the replay accepted', 20_000);
      await new Promise((r) => setTimeout(r, 300));
      const signalled = Date.now();
      api.kill('SIGTERM');
      const code = await Promise.race([exited(api), new Promise((r) => setTimeout(() => r('running'), 30_000))]);
      const tookMs = Date.now() - signalled;
      const answer = await request;
      const status = answer.out.match(/HTTP (\d+)$/)?.[1];
      console.log(`${scheme}: api exit ${String(code)} after ${tookMs} ms; curl exit ${answer.exit} status ${status}`);
      expect(code).toBe(0);
      expect({ curlExit: answer.exit, status }).toEqual({ curlExit: 0, status: '202' });
      expect(answer.out).toContain('"workflow_id"');
    } finally {
      api.kill('SIGKILL');
      await exited(api);
    }
  },
);

async function auditRows(): Promise<number> {
  const { rows } = await h.pool.query<{ n: string }>(`SELECT count(*) AS n FROM replay_audit WHERE event_id = $1`, [
    eventId,
  ]);
  return Number(rows[0].n);
}

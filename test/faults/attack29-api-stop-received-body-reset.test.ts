import net from 'node:net';
import { freePort } from '../../bench/support/ports';
import { exited, spawnCli, untilPrinted } from '../support/ingest-process';
import { createSinkHarness, type SinkHarness } from '../support/sink';
import { uniqueSuffix } from '../support/env';

/**
 * attack29 (invariant 4, and the guarantee in answer-at-close.ts: a change whose body was received is answered before
 * connections drop; one whose body comes after the close began is refused with a 503): SIGTERM to an `api` process
 * just after a burst of clients each wrote a whole POST /replay/batch (headers and body in one write, flushed to the
 * server's socket before the signal), while the API is still working through the burst.
 *
 * The requests the app has not yet taken to its preHandler hook are not in answer-at-close's in-flight set, so the
 * preClose hook finds nothing (or less) to wait for, aborts at once, and fastify's forceCloseConnections resets their
 * connections: no 202, no 503, ECONNRESET. The client cannot tell this reset from the one that drops an accepted
 * replay (attack29-api-stop-started-then-audit-slow), so it cannot know whether to send again: exactly the ambiguity
 * the 503 "send it again" exists to remove. Nothing was started for them (checked in the soak), so each could have
 * been told 503.
 *
 * Observed (120 clients, up to 6 rounds, stops at the first bad one): three runs failed at rounds 1, 4 and 2 with
 * 59, 67 and 62 of 120 requests reset (ECONNRESET, no status) and exit 0 in each; the rounds that held answered all
 * 120 (mostly 503). It fails when few requests had reached preHandler at the signal: those are answered quickly, the
 * in-flight set empties, and the rest are dropped.
 */
jest.setTimeout(120_000);

const CLIENTS = 120;
let h: SinkHarness;
let eventId: string;

beforeAll(async () => {
  h = await createSinkHarness('a29rcvreset');
  const { rows } = await h.pool.query<{ id: string }>(
    `INSERT INTO event_journal (tenant_id, topic, payload)
     VALUES ('acme', $1, '{"tenant_id":"acme","n":1}'::jsonb) RETURNING id`,
    [h.topics.leads],
  );
  eventId = rows[0].id;
}, 60_000);

afterAll(async () => {
  await h?.close();
});

interface Outcome {
  written: boolean;
  status?: number;
  error?: string;
}

/** One whole request in one write; resolves with the status the server answered, or how the connection ended. */
function client(port: number, written: () => void): Promise<Outcome> {
  return new Promise((resolve) => {
    const body = JSON.stringify({ ids: [Number(eventId)] });
    const outcome: Outcome = { written: false };
    let got = '';
    const s = net.connect(port, '127.0.0.1', () =>
      s.write(
        `POST /replay/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nx-requested-by: attack29\r\n` +
          `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
        () => {
          outcome.written = true;
          written();
        },
      ),
    );
    s.on('data', (c: Buffer) => (got += c.toString()));
    s.on('error', (e) => (outcome.error = (e as NodeJS.ErrnoException).code ?? e.message));
    s.on('close', () => {
      outcome.status = Number(got.match(/^HTTP\/1\.1 (\d{3})/)?.[1]) || undefined;
      resolve(outcome);
    });
    setTimeout(() => s.destroy(), 40_000);
  });
}

it('SIGTERM right after a burst of whole POSTs: each whose body was received gets an HTTP answer, not a reset', async () => {
  const report: string[] = [];
  let worst = 0;
  for (let round = 0; round < 6 && worst === 0; round++) {
    const port = await freePort();
    const api = spawnCli('api', {
      DATABASE_URL: h.databaseUrl,
      KAFKA_TOPICS: h.config.kafka.topics.join(','),
      KAFKA_GROUP_ID: h.config.kafka.groupId,
      TEMPORAL_TASK_QUEUE: `a29-rcvreset-${uniqueSuffix()}`,
      API_HOST: '127.0.0.1',
      API_PORT: String(port),
      API_TLS: '',
      AUTH_JWT_SECRET: '',
      AUTH_MODE: '',
      API_REPLAY_RATE_LIMIT_PER_MINUTE: '1000000',
      SHUTDOWN_TIMEOUT: '10s',
      LOG_LEVEL: 'info',
    });
    try {
      await untilPrinted(api, 'Server listening at http://');
      let written = 0;
      let signalled = false;
      const outcomes = await Promise.all(
        Array.from({ length: CLIENTS }, () =>
          client(port, () => {
            // Once every request is on the server's side of its connection: the stop.
            if (++written === CLIENTS && !signalled) {
              signalled = true;
              api.kill('SIGTERM');
            }
          }),
        ),
      );
      const code = await Promise.race([exited(api), new Promise((r) => setTimeout(() => r('running'), 30_000))]);
      const hist: Record<string, number> = {};
      for (const o of outcomes) {
        const k = o.status ? String(o.status) : `no answer (${o.error ?? 'closed'})`;
        hist[k] = (hist[k] ?? 0) + 1;
      }
      const unanswered = outcomes.filter((o) => o.written && !o.status).length;
      worst = Math.max(worst, unanswered);
      report.push(
        `round ${round}: exit ${String(code)}; ${JSON.stringify(hist)}; written then not answered ${unanswered}`,
      );
      expect(code).toBe(0);
    } finally {
      api.kill('SIGKILL');
      await exited(api);
    }
  }
  console.log(report.join('\n'));
  expect(worst).toBe(0);
});

import net from 'node:net';
import { Client as PgClient } from 'pg';
import { plainApiEnv, spawnApiProcess } from '../support/api-process';
import { uniqueSuffix } from '../support/env';
import { exited, untilPrinted } from '../support/ingest-process';
import { seedJournal } from '../support/journal';
import { createSinkHarness, type SinkHarness } from '../support/sink';

/**
 * attack32 (fix 131a9c6, "what is still unanswered when the close ends is answered by the close itself").
 *
 * Invariant (docs/integrity.md, Shutdown): every workflow that exists was named to its client in a 2xx or a 504;
 * every request received before SIGTERM gets an HTTP answer when the close ends within SHUTDOWN_TIMEOUT.
 *
 * Attack: HTTP/1.1 pipelining (one keep-alive connection, requests sent back to back, answers in order). On each of
 * CONNECTIONS connections, before SIGTERM: (1) PUT /retention, whose INSERT waits on a lock on retention_policies
 * held by another session (a migration, a long maintenance statement), then (2) POST /replay/:id, which starts its
 * replay workflow (its audit row written) and waits for the result (no worker). At SIGTERM (2) is decided at once
 * (workflowResult ends: 202 with the workflow id), but its answer is queued behind (1)'s, which node must write first.
 * At the end of the close (1) is answered by the close itself: 504 "may have been carried out" with `connection:
 * close`; node then ends the socket after (1)'s answer, and (2)'s 202, already "sent" for fastify (reply.sent, so the
 * close does not answer it again), never goes out.
 *
 * Observed (3 of 3 runs, 3 connections each): api exit 0 after 9.5 s (the locked INSERTs still pending); on each
 * connection exactly 1 answer (504 "The API
 * stopped before this request finished: it may have been carried out"), then the connection closed; 3 of 3 replay
 * workflows started (their replay_audit rows), 0 of 3 named to their client.
 * Suspected cause: api/plugins/answer-at-close.ts answerAtClose (reply.header('connection', 'close') on a request
 * with later requests pipelined behind it on the same socket; and reply.sent/whenSent count a response queued behind
 * another as answered).
 *
 * Fixed by 86d8487 (the close's answer ends the connection only when no other change on it still has an answer to
 * write): both answers on each connection, every workflow named.
 */
jest.setTimeout(120_000);

const SHUTDOWN_TIMEOUT_MS = 10_000;
const CONNECTIONS = 3;
let h: SinkHarness;

beforeAll(async () => {
  h = await createSinkHarness('a32pipe');
}, 60_000);

afterAll(async () => {
  await h?.close();
});

function request(method: string, path: string, body: string, port: number): string {
  return (
    `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\ncontent-type: application/json\r\n` +
    `X-Requested-By: attack32\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  );
}

it('a 202 pipelined behind a request the close answers itself (504, connection: close) never reaches its client', async () => {
  const { child: api, port } = await spawnApiProcess(h, {
    ...plainApiEnv(h, `a32-pipe-${uniqueSuffix()}`, SHUTDOWN_TIMEOUT_MS),
    API_REPLAY_WAIT_MS: '60000',
  });
  const ids = await seedJournal(h.pool, CONNECTIONS, { topics: [h.topics.leads], label: 'a32pipe' });
  const locker = new PgClient({ connectionString: h.databaseUrl });
  await locker.connect();
  const sockets: net.Socket[] = [];
  try {
    await untilPrinted(api, 'Server listening at http://');
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE retention_policies IN SHARE ROW EXCLUSIVE MODE');
    const received = ids.map((id, i) => {
      const socket = net.connect(port, '127.0.0.1');
      sockets.push(socket);
      let data = '';
      socket.on('data', (c: Buffer) => (data += c.toString()));
      socket.on('error', () => undefined);
      socket.write(
        request('PUT', '/retention', JSON.stringify({ policies: { [`a32-pipe-${uniqueSuffix()}-${i}`]: 7 } }), port) +
          request('POST', `/replay/${id}`, '{}', port),
      );
      return new Promise<string>((resolve) => socket.on('close', () => resolve(data)));
    });
    // Each replay has started (its audit row) and each PUT waits on the lock.
    let started: string[] = [];
    for (let i = 0; i < 150; i++) {
      const { rows } = await h.pool.query<{ workflow_id: string }>(
        'SELECT workflow_id FROM replay_audit WHERE event_id = ANY($1::bigint[])',
        [ids],
      );
      const { rows: waiting } = await h.pool.query<{ n: string }>(
        `SELECT count(*) AS n FROM pg_locks l JOIN pg_stat_activity a USING (pid)
          WHERE NOT l.granted AND a.query LIKE '%retention_policies%' AND a.query NOT LIKE '%pg_locks%'`,
      );
      started = rows.map((r) => r.workflow_id);
      if (started.length >= CONNECTIONS && Number(waiting[0].n) >= CONNECTIONS) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(started).toHaveLength(CONNECTIONS);
    await new Promise((r) => setTimeout(r, 300));
    const signalled = Date.now();
    api.kill('SIGTERM');
    const code = await Promise.race([exited(api), new Promise((r) => setTimeout(() => r('running'), 30_000))]);
    const tookMs = Date.now() - signalled;
    const texts = await Promise.race([
      Promise.all(received),
      new Promise<string[]>((r) => setTimeout(() => r(['sockets still open']), 5000)),
    ]);
    await locker.query('COMMIT');
    const perConnection = texts.map((t) => ({
      // Each status line, wherever it starts: a pipelined answer follows the body before it with no newline.
      statuses: [...t.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => m[1]),
      messages: [...t.matchAll(/"message":"([^"]*)"/g)].map((m) => m[1].slice(0, 70)),
    }));
    const untold = started.filter((w) => !texts.some((t) => t.includes(w)));
    console.log(
      `api exit ${String(code)} after ${tookMs} ms; workflows started ${started.length}, named to no client ` +
        `${untold.length}; answers per connection ${JSON.stringify(perConnection)}`,
    );
    expect(code).toBe(0);
    expect(tookMs).toBeLessThan(SHUTDOWN_TIMEOUT_MS + 1000);
    expect({ untold, answers: perConnection.map((c) => c.statuses.length) }).toEqual({
      untold: [],
      answers: ids.map(() => 2),
    });
  } finally {
    for (const s of sockets) s.destroy();
    await locker.end().catch(() => undefined);
    api.kill('SIGKILL');
    await exited(api);
  }
});

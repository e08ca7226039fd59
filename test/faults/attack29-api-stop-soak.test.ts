import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import net from 'node:net';
import { Client, Connection } from '@temporalio/client';
import { freePort } from '../../bench/support/ports';
import { exited, spawnCli, untilPrinted } from '../support/ingest-process';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';
import { uniqueSuffix } from '../support/env';

/**
 * attack29 soak: rounds of an `api` process given SIGTERM at a random moment while a random mix of clients is at
 * work: many concurrent POST /replay/:id and /replay/batch (some with Idempotency-Keys, shared between requests),
 * slow writers trickling a body across the signal, keep-alive clients sending another change after close began,
 * HTTP/1.1 pipelined triples of changes on one connection,
 * and live streams (GET /stream) open at the stop. On the real stack, nothing slowed down artificially.
 *
 * Checked each round: the process exits 0 within SHUTDOWN_TIMEOUT + 2 s (EXIT_SLACK_MS); every workflow on the
 * round's task queue was named to a client in a 2xx answer, or in the 504 that says Temporal had not confirmed its
 * start when the API stopped (our clients never go away, so a workflow no client was told of is one whose request was
 * told 503 'the workflow was not started', or dropped); every workflow named in a 2xx exists; one workflow per key; no
 * cut 2xx body.
 *
 * Observed (6 rounds, 150 concurrent): 3 of 6 rounds left workflows no client was told of, e.g. 49 workflows, 48 told,
 * every request answered (62 of them 503 "the workflow was not started"); exits all 0 within 4.6 s. Over HTTPS
 * (A29_TLS=1, API_TLS=self-signed): 3 of 5 rounds, exits 0 within 5.1 s. No key ever had two workflows, no 2xx body
 * was cut. Knobs: A29_ROUNDS, A29_CONCURRENCY, A29_SHUTDOWN_MS.
 *
 * At SHUTDOWN_TIMEOUT=1s (attack31), after the fixes for the above: untold workflows in 2 of 6 rounds, then 2 of 12.
 * Each was the second or third change pipelined on a connection whose first answer, given by the close, said
 * `connection: close`: answers go out in request order, and Node never wrote those queued behind it (a 202 its route
 * had given, or the close's own 504 naming the workflow). Held after that (answer-at-close.ts `endConnectionAfter`):
 * 16 of 16 rounds.
 */
jest.setTimeout(120_000);

// The brief's 10 s, and 1 s, where the grace for answers is about 250 ms (attack31 found workflows untold there).
const SHUTDOWN_TIMEOUTS_MS = process.env.A29_SHUTDOWN_MS ? [Number(process.env.A29_SHUTDOWN_MS)] : [10_000, 1_000];
const ROUNDS = Number(process.env.A29_ROUNDS ?? 6);
// How much later than SHUTDOWN_TIMEOUT this process may see the exit. The API's own bound (it exits 1 past its
// deadline, so an exit 0 kept it) counts from when its event loop runs the signal's handler, which 150 requests in
// flight can delay, and this process, running those clients, can see the exit late too. On the CI machine's 2 cores the
// fresh-clone run of b055ee3 saw an exit 0 after 2,020 ms at SHUTDOWN_TIMEOUT 1 s, where the bound was 1 s.
const EXIT_SLACK_MS = 2_000;
const TLS = process.env.A29_TLS === '1';
const proto = (TLS ? https : http) as unknown as typeof https;
const CONCURRENCY = Number(process.env.A29_CONCURRENCY ?? 150);
let h: SinkHarness;
let temporal: Client;
let connection: Connection;
const eventIds: string[] = [];

beforeAll(async () => {
  h = await createSinkHarness('a29soak');
  connection = await Connection.connect({ address: h.config.temporal.address });
  temporal = new Client({ connection, namespace: h.config.temporal.namespace });
  for (let i = 0; i < 5; i++) {
    const { rows } = await h.pool.query<{ id: string }>(
      `INSERT INTO event_journal (tenant_id, topic, payload)
       VALUES ('acme', $1, jsonb_build_object('tenant_id','acme','n',$2::int)) RETURNING id`,
      [h.topics.leads, i],
    );
    eventIds.push(rows[0].id);
  }
}, 60_000);

afterAll(async () => {
  await connection?.close();
  await h?.close();
});

async function workflowsOn(queue: string): Promise<string[]> {
  const ids: string[] = [];
  for await (const wf of temporal.workflow.list({ query: `TaskQueue = '${queue}'` })) ids.push(wf.workflowId);
  return ids.sort();
}

interface Outcome {
  kind: string;
  key?: string;
  status?: number;
  body?: string;
  error?: string;
}

/** Each answer an outcome holds, with its own status: a pipelined connection's are read one by one. */
function answersOf(o: Outcome): { status: number; body: string }[] {
  if (!o.kind.startsWith('pipelined')) return o.status === undefined ? [] : [{ status: o.status, body: o.body ?? '' }];
  return (o.body ?? '')
    .split(/(?=HTTP\/1\.1 \d{3} )/)
    .map((part) => ({ status: Number(part.match(/^HTTP\/1\.1 (\d{3})/)?.[1]), body: part }))
    .filter((a) => Number.isInteger(a.status));
}

const pick = <T>(xs: T[]) => xs[Math.floor(Math.random() * xs.length)];

function change(
  port: number,
  key?: string,
): { kind: string; path: string; body: string; headers: Record<string, string> } {
  const headers: Record<string, string> = { 'x-requested-by': 'attack29', 'content-type': 'application/json' };
  if (key) headers['idempotency-key'] = key;
  if (Math.random() < 0.5) {
    return { kind: 'one', path: `/replay/${pick(eventIds)}`, body: '{}', headers };
  }
  // A key is for one request body: keyed batches all name the same ids.
  return {
    kind: 'batch',
    path: '/replay/batch',
    body: JSON.stringify({ ids: key ? eventIds : [pick(eventIds)] }),
    headers,
  };
}

function send(port: number, req: ReturnType<typeof change>, agent?: http.Agent): Promise<Outcome> {
  return new Promise((resolve) => {
    const r = proto.request(
      {
        rejectUnauthorized: false,
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: req.path,
        headers: req.headers,
        agent: agent ?? false,
      },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () =>
          resolve({ kind: req.kind, key: req.headers['idempotency-key'], status: res.statusCode, body }),
        );
        res.on('error', (e) =>
          resolve({
            kind: req.kind,
            key: req.headers['idempotency-key'],
            status: res.statusCode,
            body,
            error: `body ${e.message}`,
          }),
        );
      },
    );
    r.on('error', (e) => resolve({ kind: req.kind, key: req.headers['idempotency-key'], error: e.message }));
    r.setTimeout(60_000, () => r.destroy(new Error('client timeout')));
    r.end(req.body);
  });
}

/** HTTP/1.1 pipelining: several changes written at once on one connection; every response read. */
function pipelined(port: number, reqs: ReturnType<typeof change>[]): Promise<Outcome> {
  return new Promise((resolve) => {
    const s = TLS
      ? tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] })
      : net.connect(port, '127.0.0.1');
    let got = '';
    s.write(
      reqs
        .map(
          (req) =>
            `POST ${req.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
            Object.entries(req.headers)
              .map(([k, v]) => `${k}: ${v}\r\n`)
              .join('') +
            `content-length: ${Buffer.byteLength(req.body)}\r\n\r\n${req.body}`,
        )
        .join(''),
    );
    s.on('data', (c: Buffer) => {
      got += c.toString();
      if ((got.match(/HTTP\/1\.1 \d{3} /g) ?? []).length === reqs.length && /\}$/.test(got)) s.end();
    });
    let settled = false;
    const done = (error?: string) => {
      if (settled) return;
      settled = true;
      const answers = (got.match(/HTTP\/1\.1 \d{3} /g) ?? []).length;
      const status = answers === reqs.length ? Number(got.match(/^HTTP\/1\.1 (\d+)/)?.[1]) : undefined;
      resolve({
        kind: `pipelined-${reqs.length}`,
        status,
        body: got,
        error: error ?? (status ? undefined : `${answers} of ${reqs.length} answers`),
      });
    };
    s.on('error', (e) => done(e.message));
    s.on('close', () => done());
    setTimeout(() => s.destroy(), 40_000);
  });
}

/** A body trickled byte by byte, one every `everyMs`. */
function trickle(port: number, req: ReturnType<typeof change>, everyMs: number): Promise<Outcome> {
  return new Promise((resolve) => {
    const s = TLS
      ? tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] })
      : net.connect(port, '127.0.0.1');
    let got = '';
    const head =
      `POST ${req.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
      Object.entries(req.headers)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('') +
      `content-length: ${Buffer.byteLength(req.body)}\r\n\r\n`;
    s.write(head);
    let i = 0;
    const timer = setInterval(() => {
      if (i < req.body.length && !s.destroyed) s.write(req.body[i++]);
      else clearInterval(timer);
    }, everyMs);
    s.on('data', (c: Buffer) => (got += c.toString()));
    const done = (error?: string) => {
      clearInterval(timer);
      const status = Number(got.match(/^HTTP\/1\.1 (\d+)/)?.[1]) || undefined;
      resolve({ kind: `trickle-${req.kind}`, key: req.headers['idempotency-key'], status, body: got, error });
    };
    s.on('error', (e) => done(e.message));
    s.on('close', () => done());
    setTimeout(() => s.destroy(), 40_000);
  });
}

function openStream(port: number): http.ClientRequest {
  const r = http.get({
    host: '127.0.0.1',
    port,
    path: '/crm-events',
    agent: false,
    headers: { accept: 'text/event-stream' },
  });
  r.on('response', (res) => res.resume());
  r.on('error', () => undefined);
  return r;
}

it.each(SHUTDOWN_TIMEOUTS_MS)(
  `${ROUNDS} rounds of SIGTERM amid ${CONCURRENCY} concurrent changes, SHUTDOWN_TIMEOUT %i ms: exit 0 in time, every workflow named to its client`,
  async (SHUTDOWN_TIMEOUT_MS) => {
    const report: string[] = [];
    const failures: string[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const port = await freePort();
      const queue = `a29-soak-${uniqueSuffix()}`;
      const api = spawnCli('api', {
        DATABASE_URL: h.databaseUrl,
        KAFKA_TOPICS: h.config.kafka.topics.join(','),
        KAFKA_GROUP_ID: h.config.kafka.groupId,
        TEMPORAL_TASK_QUEUE: queue,
        API_HOST: '127.0.0.1',
        API_PORT: String(port),
        ...(TLS
          ? { API_TLS: 'self-signed', API_TLS_DIR: fs.mkdtempSync(path.join(os.tmpdir(), 'a29-soak-')) }
          : { API_TLS: '' }),
        AUTH_JWT_SECRET: '',
        AUTH_MODE: '',
        API_REPLAY_WAIT_MS: '20000',
        API_REPLAY_RATE_LIMIT_PER_MINUTE: '1000000',
        SHUTDOWN_TIMEOUT: `${SHUTDOWN_TIMEOUT_MS}ms`,
        LOG_LEVEL: 'info',
      });
      try {
        await untilPrinted(api, `Server listening at ${TLS ? 'https' : 'http'}://`);
        const keys = Array.from({ length: 4 }, (_, i) => `a29-${round}-${i}-${uniqueSuffix()}`);
        const streams = Array.from({ length: 3 }, () => openStream(port));
        const agent = TLS
          ? new https.Agent({ rejectUnauthorized: false, keepAlive: true, maxSockets: 4 })
          : new http.Agent({ keepAlive: true, maxSockets: 4 });
        const pending: Promise<Outcome>[] = [];
        const launch = () => {
          const key = Math.random() < 0.3 ? pick(keys) : undefined;
          const req = change(port, key);
          const r = Math.random();
          if (r < 0.05) pending.push(pipelined(port, [req, change(port), change(port)]));
          else if (r < 0.1) pending.push(trickle(port, req, 20 + Math.floor(Math.random() * 200)));
          else if (r < 0.3) pending.push(send(port, req, agent));
          else pending.push(send(port, req));
        };
        for (let i = 0; i < CONCURRENCY; i++) launch();
        await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 1500)));
        const signalled = Date.now();
        api.kill('SIGTERM');
        // Clients keep coming during the stop: keep-alive ones and new ones.
        for (let i = 0; i < 10; i++) {
          await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 300)));
          launch();
        }
        const code = await Promise.race([exited(api), new Promise((r) => setTimeout(() => r('running'), 30_000))]);
        const tookMs = Date.now() - signalled;
        const outcomes = await Promise.all(pending);
        agent.destroy();
        for (const s of streams) s.destroy();
        const named = (statuses: (s: number) => boolean) =>
          new Set(
            outcomes
              .flatMap(answersOf)
              .filter((a) => statuses(a.status))
              .flatMap((a) => [...a.body.matchAll(/"workflow_id":"([^"]+)"/g)].map((m) => m[1])),
          );
        // Accepted (2xx), and those whose start Temporal had not confirmed when the API stopped: a 504 naming the
        // workflow to look up, which may or may not exist.
        const told = named((s) => s >= 200 && s < 300);
        const maybe = named((s) => s === 504);
        let started: string[] = [];
        await eventually(
          async () => {
            const before = started.length;
            started = await workflowsOn(queue);
            return started.length === before; // visibility settled (two equal reads)
          },
          'visibility settles',
          20_000,
        ).catch(() => undefined);
        const unanswered = outcomes.filter((o) => o.status === undefined || o.error).length;
        const untold = started.filter((id) => !told.has(id) && !maybe.has(id));
        const phantom = [...told].filter((id) => !started.includes(id)).length;
        const byStatus: Record<string, number> = {};
        for (const o of outcomes)
          byStatus[String(o.status ?? o.error)] = (byStatus[String(o.status ?? o.error)] ?? 0) + 1;
        const keyedIds = new Map<string, Set<string>>();
        for (const id of started.filter((i) => i.includes('-idem-'))) {
          const k = id.replace(/-[0-9a-f]{8}$/, '');
          keyedIds.set(k, (keyedIds.get(k) ?? new Set()).add(id));
        }
        const halfWritten = outcomes.filter((o) => {
          if (
            !o.status ||
            o.status < 200 ||
            o.status >= 300 ||
            o.kind.startsWith('trickle') ||
            o.kind.startsWith('pipelined')
          )
            return false;
          try {
            JSON.parse(o.body ?? '');
            return false;
          } catch {
            return true;
          }
        }).length;
        const notStarted = outcomes.filter((o) => /workflow was not started/.test(o.body ?? '')).length;
        const untoldKeyed = untold.filter((id) => id.includes('-idem-')).length;
        const resets = outcomes.filter((o) => o.error).map((o) => `${o.kind}:${o.error}`);
        const dupKeys = [...keyedIds.values()].filter((s) => s.size > 1).length;
        const line =
          `round ${round}: exit ${String(code)} after ${tookMs} ms; requests ${outcomes.length} ${JSON.stringify(byStatus)}; ` +
          `workflows ${started.length}, told ${told.size}, named unconfirmed ${maybe.size}, untold ${untold.length} (${untoldKeyed} keyed), told but absent ${phantom}, told 503 not started ${notStarted}, unanswered requests ${unanswered}, keys with >1 workflow ${dupKeys}, half-written 2xx ${halfWritten}; errors ${resets.join(' | ')}`;
        report.push(line);
        if (
          code !== 0 ||
          tookMs > SHUTDOWN_TIMEOUT_MS + EXIT_SLACK_MS ||
          untold.length > 0 ||
          phantom > 0 ||
          dupKeys > 0 ||
          halfWritten > 0
        )
          failures.push(line);
      } finally {
        api.kill('SIGKILL');
        await exited(api);
      }
    }
    console.log(report.join('\n'));
    expect(failures).toEqual([]);
  },
);

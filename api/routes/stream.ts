import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { maxEventId, type JournalRow } from '../../repository/event-journal';
import type { Config } from '../../shared/config';
import type { Pool } from '../../shared/db';
import type { Metrics } from '../../shared/metrics';
import { httpError } from '../http-error';
import { catchUp } from '../live/catch-up';
import { createCatchUpBudget } from '../live/catch-up-budget';
import type { JournalFeed } from '../live/journal-feed';
import { encodedFrame, StreamClient } from '../live/stream-client';
import { scopedTenant } from '../tenant-scope';

export interface StreamOptions {
  pool: Pool;
  feed: JournalFeed;
  metrics: Metrics;
  config: Pick<Config, 'stream' | 'kafka'>;
}

/** GET /crm-events: journaled events as Server-Sent Events, live, filterable, resumable with Last-Event-ID. */
const streamRoutes: FastifyPluginAsyncTypebox<StreamOptions> = async (app, { pool, feed, metrics, config }) => {
  let clients = 0;
  const catchUpBudget = createCatchUpBudget(config.stream.catchUpRowsPerSecond);
  // Ended when the app closes: an HTTP/2 session closes only once its streams have, and a live stream never would.
  const open = new Set<{ end(): unknown }>();
  // The streams each caller holds, oldest first: when every slot is taken, a caller holding fewer streams than the
  // biggest holder takes that holder's oldest one, so that one token cannot lock every other caller out.
  const holders = new Map<string, Array<() => void>>();
  const freeSlotFor = (caller: string): boolean => {
    if (clients < config.stream.maxClients) return true;
    let biggest: [string, Array<() => void>] | undefined;
    for (const entry of holders) if (!biggest || entry[1].length > biggest[1].length) biggest = entry;
    const mine = holders.get(caller)?.length ?? 0;
    if (!biggest || biggest[0] === caller || biggest[1].length <= mine + 1) return false;
    biggest[1][0](); // ends that stream; its close handler frees the slot
    return true;
  };
  app.addHook('preClose', async () => {
    for (const res of open) res.end();
  });
  app.get(
    '/crm-events',
    {
      config: { tokenInQuery: true },
      schema: {
        tags: ['stream'],
        summary: 'Live stream of journaled events (text/event-stream); resume with the Last-Event-ID header',
        querystring: Type.Object(
          {
            tenant_id: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
            topic: Type.Optional(Type.String({ minLength: 1, maxLength: 249 })),
            access_token: Type.Optional(Type.String({ maxLength: 4096 })),
          },
          { additionalProperties: false },
        ),
        headers: Type.Object({ 'last-event-id': Type.Optional(Type.String({ pattern: '^\\d{1,15}$' })) }),
      },
    },
    async (request, reply) => {
      const filter = { tenantId: scopedTenant(request, request.query.tenant_id), topic: request.query.topic };
      const caller = `${request.principal.subject}/${request.principal.tenantId ?? ''}`;
      if (!freeSlotFor(caller)) {
        throw httpError(503, `Live stream is at its limit of ${config.stream.maxClients} clients; try again later`);
      }
      const lastEventId = request.headers['last-event-id'];
      reply.hijack();
      // Over HTTP/2 (API_TLS_CERT or API_TLS) the raw response is Node's HTTP/2 compatibility response.
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        // HTTP/2 forbids connection-specific headers (RFC 9113, 8.2.2); over HTTP/1.1 it tells proxies to hold on.
        ...(request.raw.httpVersionMajor === 1 && { connection: 'keep-alive' }),
        'x-accel-buffering': 'no',
      });
      clients += 1;
      open.add(res);
      metrics.sseClients.inc();
      const asked = lastEventId === undefined ? undefined : Number(lastEventId);
      // A Last-Event-ID beyond the journal's newest id (a database restored from a backup, another environment) would
      // hold back every event until the ids caught up with it: the client is told, and continues from the newest.
      // Asked only past what the feed has read (ids it read are in the journal): no query for an ordinary resume.
      const newest =
        asked !== undefined && asked > feed.lastId ? await maxEventId(pool).catch(() => undefined) : undefined;
      const unknownCursor = asked !== undefined && newest !== undefined && asked > newest;
      const resumeFrom = unknownCursor ? newest : asked;
      const client = new StreamClient(
        res,
        filter,
        config.stream.clientBuffer,
        metrics,
        resumeFrom ?? feed.lastId,
        config.stream.clientBufferBytes,
      );
      let released = () => undefined as void;
      const evict = () => {
        client.send({
          kind: 'evicted',
          message: 'The live stream is full and you hold the most streams; this one, your oldest, is closed',
        });
        res.end();
        released(); // the slot is free now, whenever the connection itself goes
      };
      holders.set(caller, [...(holders.get(caller) ?? []), evict]);
      // Live rows that arrive during the catch-up wait here, as many as the client's buffer holds in rows and in bytes
      // (one event may be a megabyte); from the first that does not fit they are dropped and the client is told, as
      // it would be had it fallen behind live.
      const pending: Array<[JournalRow[], boolean]> = [];
      let pendingRows = 0;
      let pendingBytes = 0;
      let pendingDropped = 0;
      let caughtUp = resumeFrom === undefined;
      const onRows = (rows: JournalRow[], late: boolean) => {
        if (caughtUp) return client.offer(rows, late);
        const kept: JournalRow[] = [];
        for (const row of rows) {
          // A late row the catch-up has sent already is dropped now, while this connection still remembers sending it
          // (it remembers the last RECENT_IDS rows, and a long catch-up goes on sending before the hand-over).
          if (!client.matches(row) || (late && client.hasSent(row.id))) continue;
          const bytes = encodedFrame(row).length;
          const fits =
            pendingDropped === 0 &&
            pendingRows < config.stream.clientBuffer &&
            pendingBytes + bytes <= config.stream.clientBufferBytes;
          if (!fits) {
            pendingDropped += 1;
            continue;
          }
          kept.push(row);
          pendingRows += 1;
          pendingBytes += bytes;
        }
        if (kept.length > 0) pending.push([kept, late]);
      };
      feed.on('rows', onRows);
      client.send({
        kind: 'connected',
        service: 'crm-events-sink',
        topics: config.kafka.topics,
        filter: { tenant_id: filter.tenantId ?? null, topic: filter.topic ?? null },
        resumed_after: resumeFrom ?? null,
      });
      if (unknownCursor) {
        client.send({
          kind: 'cursor_unknown',
          last_event_id: asked,
          resume_after: resumeFrom,
          message: `Last-Event-ID ${asked} is beyond the journal's newest event ${resumeFrom}; continuing from there`,
        });
      }
      const heartbeat = setInterval(() => client.comment('heartbeat'), config.stream.heartbeatMs);
      let closed = false;
      const release = () => {
        if (closed) return;
        closed = true;
        clearInterval(heartbeat);
        feed.off('rows', onRows);
        clients -= 1;
        open.delete(res);
        const held = (holders.get(caller) ?? []).filter((e) => e !== evict);
        if (held.length) holders.set(caller, held);
        else holders.delete(caller);
        metrics.sseClients.dec();
      };
      request.raw.on('close', release);
      released = release;
      if (resumeFrom !== undefined) {
        // Replay what the client missed from the journal (at most STREAM_MAX_BACKLOG events, paced by the client),
        // then hand over to the live feed without gap or repeat.
        try {
          const { sent, truncated } = await catchUp(pool, client, {
            maxBacklog: config.stream.maxBacklog,
            clientBuffer: config.stream.clientBuffer,
            pageBytes: config.stream.clientBufferBytes,
            isClosed: () => closed,
            horizon: () => feed.lastId,
            budget: catchUpBudget,
          });
          if (truncated) {
            client.send({
              kind: 'backlog_truncated',
              sent,
              max_backlog: config.stream.maxBacklog,
              resume_after: client.cursor,
              message:
                `More than ${config.stream.maxBacklog} events were missed; continuing live. Reconnect with ` +
                `Last-Event-ID: ${client.cursor} to fetch the next part from the journal`,
            });
          }
        } catch (err) {
          request.log.warn({ err }, 'live stream catch-up failed');
          client.send({ kind: 'error', message: 'Could not read the journal to resume; reconnect to try again' });
        }
        caughtUp = true;
        for (const [rows, late] of pending.splice(0)) client.offer(rows, late);
        if (pendingDropped > 0) {
          client.send({
            kind: 'dropped',
            count: pendingDropped,
            message: 'Live events arrived faster than you took the backlog; reconnect with Last-Event-ID to fetch them',
          });
        }
      }
    },
  );
};

export default streamRoutes;

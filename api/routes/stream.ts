import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { eventsAfter, type JournalRow } from '../../repository/event-journal';
import type { Config } from '../../shared/config';
import type { Pool } from '../../shared/db';
import type { Metrics } from '../../shared/metrics';
import { httpError } from '../http-error';
import type { JournalFeed } from '../live/journal-feed';
import { StreamClient } from '../live/stream-client';
import { scopedTenant } from '../tenant-scope';

export interface StreamOptions {
  pool: Pool;
  feed: JournalFeed;
  metrics: Metrics;
  config: Pick<Config, 'stream' | 'kafka'>;
}

const CATCH_UP_PAGE = 500;

/** GET /crm-events: journaled events as Server-Sent Events, live, filterable, resumable with Last-Event-ID. */
const streamRoutes: FastifyPluginAsyncTypebox<StreamOptions> = async (app, { pool, feed, metrics, config }) => {
  let clients = 0;
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
      if (clients >= config.stream.maxClients) {
        throw httpError(503, `Live stream is at its limit of ${config.stream.maxClients} clients; try again later`);
      }
      const lastEventId = request.headers['last-event-id'];
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
      });
      clients += 1;
      metrics.sseClients.inc();
      const resumeFrom = lastEventId === undefined ? undefined : Number(lastEventId);
      const client = new StreamClient(res, filter, config.stream.clientBuffer, metrics, resumeFrom ?? feed.lastId);
      const pending: Array<[JournalRow[], boolean]> = [];
      let caughtUp = resumeFrom === undefined;
      const onRows = (rows: JournalRow[], late: boolean) =>
        caughtUp ? client.offer(rows, late) : pending.push([rows, late]);
      feed.on('rows', onRows);
      client.send({
        kind: 'connected',
        service: 'crm-events-sink',
        topics: config.kafka.topics,
        filter: { tenant_id: filter.tenantId ?? null, topic: filter.topic ?? null },
        resumed_after: resumeFrom ?? null,
      });
      const heartbeat = setInterval(() => client.comment('heartbeat'), config.stream.heartbeatMs);
      let closed = false;
      request.raw.on('close', () => {
        closed = true;
        clearInterval(heartbeat);
        feed.off('rows', onRows);
        clients -= 1;
        metrics.sseClients.dec();
      });
      if (resumeFrom !== undefined) {
        // Replay what the client missed from the journal, then hand over to the live feed without gap or repeat.
        try {
          for (;;) {
            const rows = await eventsAfter(pool, client.cursor, filter, CATCH_UP_PAGE);
            client.offer(rows);
            if (rows.length < CATCH_UP_PAGE || closed) break;
          }
        } catch (err) {
          request.log.warn({ err }, 'live stream catch-up failed');
          client.send({ kind: 'error', message: 'Could not read the journal to resume; reconnect to try again' });
        }
        caughtUp = true;
        for (const [rows, late] of pending.splice(0)) client.offer(rows, late);
      }
    },
  );
};

export default streamRoutes;

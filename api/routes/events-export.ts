import { Readable, pipeline } from 'node:stream';
import { createGzip } from 'node:zlib';
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { exportBounds, exportEventLines } from '../../repository/event-export';
import type { Pool } from '../../shared/db';
import type { Metrics } from '../../shared/metrics';
import { EventFilterQuery, eventFilterOf } from '../event-filter';
import { httpError } from '../http-error';
import { errorResponses } from '../schemas';

/** Headers naming the journal's id span at the start of an export (clients show progress against it). */
export const EXPORT_FIRST_ID_HEADER = 'x-export-first-id';
export const EXPORT_LAST_ID_HEADER = 'x-export-last-id';

/**
 * GET /events/export: every journal row matching an /events filter as NDJSON, oldest first, optionally gzipped
 * (`?gzip=true`: a .ndjson.gz file; or `Accept-Encoding: gzip`: the same NDJSON, compressed on the wire).
 */
const eventExportRoutes: FastifyPluginAsyncTypebox<{ pool: Pool; metrics: Metrics; poolSize: number }> = async (
  app,
  { pool, metrics, poolSize },
) => {
  // An export holds a pool connection for as long as its client takes to read it. At most all but two of the API's
  // connections do so at once, so that exports whose clients stopped reading leave reads and catch-ups room.
  const maxExports = Math.max(1, poolSize - 2);
  let exporting = 0;
  app.get(
    '/events/export',
    {
      schema: {
        tags: ['events'],
        summary: 'Stream every journal row matching an /events filter as NDJSON (optionally gzip), oldest first',
        querystring: Type.Object(
          { ...EventFilterQuery, gzip: Type.Optional(Type.Boolean()) },
          { additionalProperties: false },
        ),
        response: {
          200: Type.String({ description: 'One JSON object per line: a journal row with its payload' }),
          ...errorResponses,
          403: Type.Ref('ErrorBody'),
        },
      },
    },
    async (request, reply) => {
      const filter = await eventFilterOf(pool, request, request.query);
      if (exporting >= maxExports) {
        reply.header('retry-after', '30');
        throw httpError(
          503,
          `${maxExports} exports are running in this API process, its most at once (API_DATABASE_POOL_SIZE ${poolSize} less two); try again later`,
        );
      }
      exporting += 1;
      const giveBack = (err: Error): never => {
        exporting -= 1;
        throw err;
      };
      const bounds = await exportBounds(pool).catch(giveBack);
      const client = await pool.connect().catch(giveBack);
      // Readable.from pulls the next cursor batch only when the socket has taken the last one (backpressure); the
      // client goes back to the pool once the stream has closed, its cursor closed by then, however the export ended.
      const lines = Readable.from(
        exportEventLines(client, filter, (rows) => metrics.exportedRows.inc(rows)),
        { objectMode: false },
      );
      let failure: Error | undefined;
      lines.once('error', (err) => {
        failure = err;
        request.log.error({ err }, 'export failed mid-stream');
      });
      lines.once('close', () => {
        exporting -= 1;
        client.release(failure);
      });

      const asFile = request.query.gzip === true;
      const onWire = !asFile && /\bgzip\b/.test(String(request.headers['accept-encoding'] ?? ''));
      reply
        .header(EXPORT_FIRST_ID_HEADER, String(bounds.firstId))
        .header(EXPORT_LAST_ID_HEADER, String(bounds.lastId))
        .header('vary', 'accept-encoding');
      if (asFile) {
        reply.type('application/gzip').header('content-disposition', 'attachment; filename="events.ndjson.gz"');
      } else {
        reply.type('application/x-ndjson; charset=utf-8');
        if (onWire) reply.header('content-encoding', 'gzip');
      }
      // A failure after the first byte cannot become an error status: the connection is cut instead, so the client
      // sees an incomplete body (no final chunk), never a short file that looks whole.
      const body = asFile || onWire ? pipeline(lines, createGzip(), () => undefined) : lines;
      return reply.send(body);
    },
  );
};

export default eventExportRoutes;

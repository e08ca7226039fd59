import fp from 'fastify-plugin';
import { Client, Connection } from '@temporalio/client';
import type { Config } from '../../shared/config';
import { httpError } from '../http-error';

export interface TemporalGateway {
  /**
   * Runs fn with a connected client, each of its calls bounded by TEMPORAL_CALL_DEADLINE_MS; Temporal being
   * unreachable becomes a 503 that says so.
   */
  call<T>(fn: (client: Client) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

declare module 'fastify' {
  interface FastifyInstance {
    temporal: TemporalGateway;
  }
}

/**
 * How long any call the API makes to Temporal (a workflow's start, a describe, a query, a signal) may take before it
 * fails with DEADLINE_EXCEEDED: without a deadline a call to a stalled frontend (its connection up, the server frozen)
 * waits for ever and its request is never answered. Well below the 30 s most HTTP clients and proxies wait, so that the
 * client gets the answer (a start's 504 naming its workflow) rather than giving up without it; the API has no request
 * timeout of its own.
 */
export const TEMPORAL_CALL_DEADLINE_MS = 10_000;

/** gRPC DEADLINE_EXCEEDED: the call may have been carried out, its answer did not come in time. */
export const GRPC_DEADLINE_EXCEEDED = 4;
/** gRPC UNAVAILABLE: the link failed (never made, or cut with the call on it, and the client's retries failed too). */
const GRPC_UNAVAILABLE = 14;
const UNAVAILABLE_CODES = new Set([GRPC_DEADLINE_EXCEEDED, GRPC_UNAVAILABLE]);
/**
 * The codes with which a call already sent may have been carried out all the same: cancelled (CANCELLED, 1), timed
 * out, cut (UNAVAILABLE after the client's retries, UNKNOWN 2, INTERNAL 13). Any other is Temporal's own answer.
 */
const OUTCOME_UNKNOWN_CODES = new Set([1, 2, GRPC_DEADLINE_EXCEEDED, 13, GRPC_UNAVAILABLE]);

/** The gRPC status code of an error from Temporal's client (on it or its cause), if any. */
export function grpcCode(err: unknown): number | undefined {
  const code = (err as { code?: unknown }).code ?? (err as { cause?: { code?: unknown } }).cause?.code;
  return typeof code === 'number' ? code : undefined;
}

/** Whether a call that failed with err, once sent, may have been carried out by Temporal (see OUTCOME_UNKNOWN_CODES). */
export function outcomeUnknown(err: unknown): boolean {
  const code = grpcCode(err);
  return code !== undefined && OUTCOME_UNKNOWN_CODES.has(code);
}

/**
 * The Temporal client of the API, connected on first use and reconnected after a failure, so that the API (and its
 * read routes) start and keep working while Temporal is down.
 */
export function createTemporalGateway(config: Pick<Config, 'temporal'>): TemporalGateway {
  let connecting: Promise<Client> | undefined;
  let connection: Connection | undefined;
  const unavailable = (err: unknown) =>
    httpError(
      503,
      `Temporal is unreachable at ${config.temporal.address}: replay is unavailable for now (${(err as Error).message}). Ingestion and read routes keep working.`,
    );
  const client = () =>
    (connecting ??= Connection.connect({ address: config.temporal.address, connectTimeout: 3000 }).then(
      (conn) => {
        connection = conn;
        return new Client({ connection: conn, namespace: config.temporal.namespace });
      },
      (err) => {
        connecting = undefined;
        throw unavailable(err);
      },
    ));
  return {
    async call(fn) {
      const c = await client();
      try {
        return await c.withDeadline(Date.now() + TEMPORAL_CALL_DEADLINE_MS, () => fn(c));
      } catch (err) {
        const code = grpcCode(err);
        if (code !== undefined && UNAVAILABLE_CODES.has(code)) throw unavailable(err);
        throw err;
      }
    },
    async close() {
      await connection?.close();
    },
  };
}

export default fp<{ gateway: TemporalGateway }>(
  async (app, { gateway }) => {
    app.decorate('temporal', gateway);
    app.addHook('onClose', () => gateway.close());
  },
  { name: 'temporal' },
);

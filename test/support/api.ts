import { Client, Connection } from '@temporalio/client';
import { NativeConnection, type Worker } from '@temporalio/worker';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { buildApp } from '../../api/app';
import type { Config } from '../../shared/config';
import type { TlsPair } from '../../shared/tls';
import { createReplayWorker } from '../../worker/worker';
import { uniqueSuffix } from './env';
import { createSinkHarness, eventually, type SinkHarness } from './sink';
import { activityDeps, workflowBundle } from './temporal';
import { readToEnd } from '../../bench/support/topic-end';

export interface ApiEnv {
  h: SinkHarness;
  app: FastifyInstance;
  /** A Temporal client of its own, for assertions (listing workflows, describing schedules). */
  client: Client;
  taskQueue: string;
  worker?: Worker;
  close(): Promise<void>;
}

export interface ApiEnvOptions {
  /** Extra environment for the config (AUTH_JWT_SECRET, API_REPLAY_RATE_LIMIT_PER_MINUTE, ...). */
  env?: Record<string, string>;
  /** Run a real replay worker on the private task queue (default true). */
  worker?: boolean;
  /** Start the real ingest consumer, so that replays come back into the journal (default true). */
  ingest?: boolean;
  /** Serve HTTPS with HTTP/2 (and HTTP/1.1 fallback) with this pair, as API_TLS_CERT/API_TLS_KEY would. */
  tls?: TlsPair;
}

/**
 * The whole service on the real stack for one test file: a sink harness (private database and topics, the ingest
 * consumer), a replay worker on a private task queue of the dev server, and the API built on the same config.
 */
export async function createApiEnv(label: string, opts: ApiEnvOptions = {}): Promise<ApiEnv> {
  const taskQueue = `api-test-${label}-${uniqueSuffix()}`;
  const h = await createSinkHarness(label, { TEMPORAL_TASK_QUEUE: taskQueue, ...opts.env });
  if (opts.ingest ?? true) await h.startIngest();
  const { config } = h;

  let worker: Worker | undefined;
  let running: Promise<void> | undefined;
  let workerConnection: NativeConnection | undefined;
  if (opts.worker ?? true) {
    workerConnection = await NativeConnection.connect({ address: config.temporal.address });
    worker = await createReplayWorker({
      connection: workerConnection,
      config,
      deps: { ...activityDeps(h), config },
      workflowBundle: await workflowBundle(),
    });
    running = worker.run();
  }

  const app = await buildTestApp(h, h.config, opts.tls);
  const connection = await Connection.connect({ address: config.temporal.address });
  const client = new Client({ connection, namespace: config.temporal.namespace });

  return {
    h,
    app,
    client,
    taskQueue,
    worker,
    // Every step runs even when one fails, so a broken test never leaves a worker polling or a database behind.
    close: () =>
      closeAll([
        () => terminateRunning(client, taskQueue),
        () => app.close(),
        async () => {
          if (worker?.getState() === 'RUNNING') worker.shutdown();
          await running;
        },
        async () => workerConnection?.close(),
        () => connection.close(),
        () => h.close(),
      ]),
  };
}

/** The API on a harness's pool and config (optionally changed, e.g. a dead Temporal address); not listening. */
export function buildTestApp(h: SinkHarness, config: Config = h.config, tls?: TlsPair): Promise<FastifyInstance> {
  return buildApp({
    config,
    pool: h.pool,
    metrics: h.metrics,
    log: h.log,
    healthChecks: { postgres: () => h.pool.query('SELECT 1') },
    tls,
    archive: h.archive,
  });
}

/** Ends what a file left running on its private queue, so that nothing waits forever for a worker that is gone. */
async function terminateRunning(client: Client, taskQueue: string): Promise<void> {
  for await (const wf of client.workflow.list({ query: `TaskQueue='${taskQueue}' AND ExecutionStatus='Running'` })) {
    await client.workflow
      .getHandle(wf.workflowId, wf.runId)
      .terminate('test file finished')
      .catch(() => undefined);
  }
}

async function closeAll(steps: (() => Promise<unknown>)[]): Promise<void> {
  let first: unknown;
  for (const step of steps) {
    await step().catch((err: unknown) => (first ??= err));
  }
  if (first) throw first;
}

/** Authorization header for a bearer token. */
export const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** The JSON body of an injected response. */
export const json = <T = Record<string, unknown>>(res: LightMyRequestResponse): T => JSON.parse(res.payload) as T;

/** True when a response body carries anything that looks like a stack trace or a driver's internals. */
export function leaksInternals(payload: string): boolean {
  return /\n\s+at |\bat .+\.(ts|js):\d+|"stack"|node_modules|SQLSTATE|syntax error at/.test(payload);
}

/**
 * Produces events through Kafka and waits until the ingest consumer has journaled them. Each event gets a unique
 * `ref` field; the journal ids come back in the order of `events`.
 */
export async function produceJournaled(
  h: SinkHarness,
  topic: string,
  events: Record<string, unknown>[],
  opts: { key?: string } = {},
): Promise<number[]> {
  const refs = events.map(() => `ref-${uniqueSuffix()}-${Math.random().toString(36).slice(2, 8)}`);
  await h.send(
    topic,
    events.map((e, i) => ({ ...e, ref: refs[i] })),
    opts,
  );
  const rows = await eventually(async () => {
    const { rows } = await h.pool.query<{ id: string; ref: string }>(
      "SELECT id, payload->>'ref' AS ref FROM event_journal WHERE payload->>'ref' = ANY($1::text[]) AND replay_count = 0",
      [refs],
    );
    return rows.length === refs.length ? rows : undefined;
  }, `${refs.length} events journaled from ${topic}`);
  const byRef = new Map(rows.map((r) => [r.ref, Number(r.id)]));
  return refs.map((ref) => byRef.get(ref)!);
}

/** Journal rows that are replays made by one workflow. */
export async function replayRowsOf(h: SinkHarness, workflowId: string) {
  const { rows } = await h.pool.query<{
    id: string;
    from_id: string;
    replay_count: number;
    replay_source: string;
    tenant_id: string;
    topic: string;
  }>(
    `SELECT id, payload->>'_replayed_from_event_id' AS from_id, replay_count, replay_source, tenant_id, topic
       FROM event_journal WHERE payload->>'_replay_id' = $1 ORDER BY id`,
    [workflowId],
  );
  return rows.map((r) => ({ ...r, id: Number(r.id), from_id: Number(r.from_id) }));
}

/** Polls GET /replays/:workflowId until the workflow has closed; returns the last answer. */
export async function closedWorkflow(
  app: FastifyInstance,
  workflowId: string,
  headers: Record<string, string> = {},
  timeoutMs = 30_000,
) {
  return eventually(
    async () => {
      const res = await app.inject({ method: 'GET', url: `/replays/${encodeURIComponent(workflowId)}`, headers });
      if (res.statusCode !== 200)
        throw new Error(`GET /replays/${workflowId} answered ${res.statusCode}: ${res.payload}`);
      const body = json<WorkflowDetail>(res);
      return body.workflow_status === 'RUNNING' ? undefined : body;
    },
    `workflow ${workflowId} to close`,
    timeoutMs,
  );
}

export interface WorkflowDetail {
  workflow_id: string;
  workflow_status: string;
  temporal_ui_url: string;
  audit: Record<string, unknown> | null;
  progress: { status: string; matched: number; published: number; failed: number; cursor: number } | null;
  result?: Record<string, unknown>;
}

/**
 * Every message a replay workflow published to a topic, read back from Kafka itself (the journal deduplicates
 * replays, so only the topic shows whether something was sent twice), with its key and headers as `_key` and
 * `_headers`. Reads up to the high watermarks of the moment,
 * so everything acknowledged before the call is seen, with no waiting for stragglers.
 */
export async function publishedBy(
  h: SinkHarness,
  topic: string,
  workflowId: string,
): Promise<Record<string, unknown>[]> {
  const found: Record<string, unknown>[] = [];
  await readToEnd(h.kafka, topic, (_partition, message) => {
    const value = parseObject(message.value);
    if (value?._replay_id === workflowId) {
      const headers = Object.fromEntries(
        Object.entries(message.headers ?? {}).map(([name, v]) => [name, v?.toString()]),
      );
      found.push({ ...value, _key: message.key?.toString() ?? null, _headers: headers });
    }
  });
  return found;
}

/** A message value as a JSON object; undefined for the poison messages some tests send on purpose. */
function parseObject(value: Buffer | null): Record<string, unknown> | undefined {
  try {
    const parsed: unknown = JSON.parse(value?.toString() ?? '');
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)
      ? (parsed as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

import type { Context } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import { decodeFromPayloadsAtIndex } from '@temporalio/common/lib/internal-non-workflow';
import type { AttemptLease } from '../shared/kafka';
import { within } from '../shared/timeout';

/**
 * The replay worker's longest heartbeat throttle (WorkerOptions.maxHeartbeatThrottleInterval): a heartbeat reaches the
 * server at most this long after it is made, so that the lease (below) follows the heartbeats closely. The SDK's
 * default (60 s, or 0.8 × the heartbeat timeout) would leave a page waiting up to a minute for a heartbeat to land.
 */
export const HEARTBEAT_THROTTLE_MS = 1_000;

/** How far before its confirmed end a lease is taken to end: the server's timer and the retry's start are not exact. */
export const LEASE_MARGIN_MS = 5_000;

/** How long one question to the server (a describe of the attempt's workflow) may take. */
const ASK_TIMEOUT_MS = 5_000;

/** Pauses between a hold's questions: 10 ms doubling to 0.5 s. */
const HOLD_PAUSE_FIRST_MS = 10;
const HOLD_PAUSE_MAX_MS = 500;

/** gRPC NOT_FOUND: the workflow is no longer known to the server (closed and gone, or never there). */
const GRPC_NOT_FOUND = 5;

/** The key of the envelope an attempt's heartbeat details go to the server in: which attempt made it, its number. */
const BEAT = 'crmEventsBeat';

interface Beat {
  [BEAT]: { attempt: number; n: number };
  details?: unknown;
}

function isBeat(value: unknown): value is Beat {
  const stamp = (value as Partial<Beat> | null | undefined)?.[BEAT];
  return typeof stamp?.attempt === 'number' && typeof stamp.n === 'number';
}

/** The activity's own heartbeat details, out of the envelope a leased attempt sent them in (as they are otherwise). */
export function beatDetails(details: unknown): unknown {
  return isBeat(details) ? details.details : details;
}

/** What the server holds of the activity: its pending attempt and that attempt's last recorded details; undefined: none. */
export type AskServer = () => Promise<{ attempt: number; details: unknown } | undefined>;

/** Asks the Temporal server through the worker's client (a describe of the attempt's workflow); undefined: no client. */
export function askServerOf(ctx: Context): AskServer | undefined {
  let client: Client;
  try {
    client = ctx.client;
  } catch {
    return undefined; // a MockActivityEnvironment made without a client
  }
  if (!client) return undefined;
  const { workflowNamespace, workflowExecution, activityId } = ctx.info;
  return async () => {
    const response = await client.withDeadline(Date.now() + ASK_TIMEOUT_MS, () =>
      client.workflowService.describeWorkflowExecution({ namespace: workflowNamespace, execution: workflowExecution }),
    );
    const pending = response.pendingActivities?.find((activity) => activity.activityId === activityId);
    if (!pending) return undefined;
    const payloads = pending.heartbeatDetails?.payloads;
    const details = payloads?.length
      ? await decodeFromPayloadsAtIndex(client.options.loadedDataConverter, 0, payloads)
      : undefined;
    return { attempt: pending.attempt ?? 0, details };
  };
}

/** One attempt's heartbeats and lease (leaseAttempt). */
export interface LeasedAttempt {
  /** The activity's heartbeat (what ctx.heartbeat becomes): its details, stamped, to the SDK. */
  heartbeat(details?: unknown): void;
  /** Heartbeats the last details again and asks the server what it recorded. */
  keepAlive(): void;
  lease: AttemptLease;
  /** The attempt's cancellation, or aborted once the server is known to have ended the attempt. */
  signal: AbortSignal;
}

/**
 * The lease of an attempt with a heartbeat timeout (shared/kafka.ts AttemptLease). Its heartbeats go to the SDK (`beat`,
 * which sends them on) stamped with the attempt and a number, and this side remembers when each was made; the server
 * is then asked (`ask`) which one it last recorded: the attempt lives at least until that one's making plus the
 * heartbeat timeout. The SDK is the only one to send heartbeats, in the order they are made, so the details the server
 * holds are never older than ones it held before. The server answering that another attempt is pending, or none, ends
 * the attempt here (`signal`). A heartbeat call of the SDK gives no word of its arrival (it resets the SDK's own timer
 * either way): without the question, a worker cut off from Temporal but not from Kafka sent a page its retry sent too
 * (test/unit/attack46-keepalive-beats-lost-heartbeats.test.ts).
 */
export function leaseAttempt(ctx: Context, beat: (details: unknown) => void, ask: AskServer): LeasedAttempt {
  const { attempt, heartbeatTimeoutMs = 0 } = ctx.info;
  let last = beatDetails(ctx.info.heartbeatDetails);
  let n = 0;
  let lastMadeAt = -Infinity;
  /** When each heartbeat not yet known to be recorded was made (performance.now()), by its number. */
  const made = new Map<number, number>();
  let until = -Infinity;
  const ended = new AbortController();
  const signal = AbortSignal.any([ctx.cancellationSignal, ended.signal]);

  const heartbeat = (details?: unknown) => {
    last = details;
    n += 1;
    lastMadeAt = performance.now();
    made.set(n, lastMadeAt);
    // One made a heartbeat timeout ago can grow no lease any more.
    for (const [k, at] of made) if (at + heartbeatTimeoutMs <= lastMadeAt) made.delete(k);
    beat({ [BEAT]: { attempt, n }, details } satisfies Beat);
  };
  const end = (why: string) => ended.abort(new Error(`Attempt ${attempt} was ended by the Temporal server (${why})`));

  let asking: Promise<void> | undefined;
  const askNow = () =>
    (asking ??= (async () => {
      try {
        const held = await ask();
        if (!held) return end('no attempt of the activity is pending');
        if (held.attempt !== attempt) return end(`attempt ${held.attempt} is pending`);
        if (!isBeat(held.details) || held.details[BEAT].attempt !== attempt) return;
        const recorded = held.details[BEAT].n;
        const at = made.get(recorded);
        if (at !== undefined) until = Math.max(until, at + heartbeatTimeoutMs - LEASE_MARGIN_MS);
        for (const k of made.keys()) if (k < recorded) made.delete(k);
      } catch (err) {
        if ((err as { code?: unknown }).code === GRPC_NOT_FOUND) end((err as Error).message);
        // Otherwise no answer (Temporal unreachable): the lease does not grow.
      } finally {
        asking = undefined;
      }
    })());

  const lease: AttemptLease = {
    until: () => until,
    async hold(ms, holdSignal) {
      if (heartbeatTimeoutMs - LEASE_MARGIN_MS - HEARTBEAT_THROTTLE_MS < ms) {
        throw new Error(
          `A heartbeat timeout of ${heartbeatTimeoutMs} ms can never hold a lease of ${ms} ms (its activity options are wrong)`,
        );
      }
      const stop = holdSignal ? AbortSignal.any([signal, holdSignal]) : signal;
      for (let pause = HOLD_PAUSE_FIRST_MS; ; pause = Math.min(pause * 2, HOLD_PAUSE_MAX_MS)) {
        stop.throwIfAborted();
        if (until - performance.now() >= ms) return;
        if (performance.now() - lastMadeAt >= HEARTBEAT_THROTTLE_MS) heartbeat(last);
        await within(askNow(), Infinity, stop);
        stop.throwIfAborted();
        if (until - performance.now() >= ms) return;
        await within(new Promise((resolve) => setTimeout(resolve, pause)), Infinity, stop);
      }
    },
  };
  return {
    heartbeat,
    keepAlive: () => {
      if (signal.aborted) return;
      heartbeat(last);
      void askNow();
    },
    lease,
    signal,
  };
}

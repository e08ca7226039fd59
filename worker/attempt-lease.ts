import type { Context } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import { decodeFromPayloadsAtIndex } from '@temporalio/common/lib/internal-non-workflow';
import type { AttemptLease } from '../shared/kafka';
import { eitherSignal, within } from '../shared/timeout';

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

/** How far apart the making times of stamped heartbeats are kept (leaseAttempt). */
const MADE_STEP_MS = 100;

/** How long a hold waits out unanswered questions before it may give up (a Temporal blip shorter than this passes). */
const HOLD_UNANSWERED_MS = 20_000;

/** Pauses between a hold's questions: 10 ms doubling to 0.5 s. */
const HOLD_PAUSE_FIRST_MS = 10;
const HOLD_PAUSE_MAX_MS = 500;

/** gRPC NOT_FOUND: the workflow is no longer known to the server (closed and gone, or never there). */
const GRPC_NOT_FOUND = 5;

/** The key of the stamp an attempt's heartbeat details go to the server with: which attempt made it, its number. */
const BEAT = 'crmEventsBeat';

/** A stamp; `wrapped`: the details were not a plain object and are under `details` beside it. */
interface Stamp {
  attempt: number;
  n: number;
  wrapped?: true;
}

type Stamped = { [BEAT]: Stamp; details?: unknown } & Record<string, unknown>;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype;
}

function isStamped(value: unknown): value is Stamped {
  const stamp = isPlainObject(value) ? (value[BEAT] as Partial<Stamp> | undefined) : undefined;
  return typeof stamp?.attempt === 'number' && typeof stamp.n === 'number';
}

/**
 * Details stamped: a plain object gets the stamp as one more property (a worker that knows nothing of stamps reads it
 * as it was), anything else (a number, a string, nothing) is wrapped.
 */
function stamped(details: unknown, stamp: Omit<Stamp, 'wrapped'>): Stamped {
  return isPlainObject(details) && !(BEAT in details)
    ? { ...details, [BEAT]: stamp }
    : { [BEAT]: { ...stamp, wrapped: true }, details };
}

/** The activity's own heartbeat details, without the stamp a leased attempt sent them with (as they are otherwise). */
export function beatDetails(details: unknown): unknown {
  if (!isStamped(details)) return details;
  if (details[BEAT].wrapped) return details.details;
  const { [BEAT]: _stamp, ...own } = details;
  return own;
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
  /** While a send is under way: heartbeats the last details again (while the lease lasts) and asks the server. */
  keepAlive(): void;
  lease: AttemptLease;
  /** The attempt's cancellation, or aborted once the server is known to have ended the attempt. */
  signal: AbortSignal;
}

/**
 * The lease of an attempt with a heartbeat timeout (shared/kafka.ts AttemptLease). Once a send first asks for it, the
 * attempt's heartbeats go to the SDK (`beat`, which sends them on) stamped with the attempt and a number, and this side
 * remembers when each was made; the server is then asked (`ask`) which one it last recorded: the attempt lives at least
 * until that one's making plus the heartbeat timeout. The SDK is the only one to send heartbeats, in the order they
 * are made, so the details the server holds are never older than ones it held before. The server answering that
 * another attempt is pending, or none, ends the attempt here (`signal`). A heartbeat call of the SDK gives no word of
 * its arrival (it resets the SDK's own timer either way): without the question, a worker cut off from Temporal but not
 * from Kafka sent a page its retry sent too (test/unit/attack46-keepalive-beats-lost-heartbeats.test.ts). An activity
 * that never sends never stamps: its details go as they are.
 */
export function leaseAttempt(ctx: Context, beat: (details: unknown) => void, ask: AskServer): LeasedAttempt {
  const { attempt, heartbeatTimeoutMs = 0 } = ctx.info;
  const attemptStartedAt = performance.now();
  let last = beatDetails(ctx.info.heartbeatDetails);
  let stamping = false;
  let n = 0;
  let lastMadeAt = -Infinity;
  /**
   * When stamped heartbeats were made (performance.now()), ascending, one kept per MADE_STEP_MS: a heartbeat not kept
   * counts as made when the last one kept before it was (earlier: a shorter lease, never a longer one). At most a
   * heartbeat timeout's worth, so at most heartbeatTimeoutMs / MADE_STEP_MS of them.
   */
  const made: { n: number; at: number }[] = [];
  let until = -Infinity;
  /**
   * When the questions began to go unanswered, and when the last unanswered one was asked (performance.now()): a run of
   * unanswered questions, each asked within HOLD_UNANSWERED_MS of the one before; undefined: answered since.
   */
  let unansweredSince: number | undefined;
  let lastUnansweredAt = -Infinity;
  /** When the server last answered that this attempt is pending (performance.now()). */
  let answeredAt = -Infinity;
  const ended = new AbortController();
  const signal = AbortSignal.any([ctx.cancellationSignal, ended.signal]);

  const heartbeat = (details?: unknown) => {
    last = details;
    if (!stamping) return beat(details);
    n += 1;
    lastMadeAt = performance.now();
    if (made.length === 0 || lastMadeAt - made[made.length - 1].at >= MADE_STEP_MS) made.push({ n, at: lastMadeAt });
    // One made a heartbeat timeout ago can grow no lease any more.
    while (made.length > 1 && made[0].at + heartbeatTimeoutMs <= lastMadeAt) made.shift();
    beat(stamped(details, { attempt, n }));
  };
  /**
   * Whether this side may heartbeat to keep the attempt alive (the activity's own heartbeats always go): while it
   * stamps, only once the server has answered since the last heartbeat (the first one needs none). Cut off from
   * Temporal, it stops after one heartbeat into the void, so that the SDK's own timer (heartbeat timeout plus 5 s after
   * the last heartbeat) ends a waiting attempt here too: a send waiting for a lease that could no longer come waited
   * until the attempt's start-to-close timeout, 10 minutes, holding its slots
   * (test/unit/attack47-hold-outlives-ended-attempt.test.ts).
   */
  const renewing = () => !stamping || answeredAt >= lastMadeAt;
  const renew = () => {
    if (performance.now() - lastMadeAt >= HEARTBEAT_THROTTLE_MS && renewing()) heartbeat(last);
  };
  const end = (why: string) => ended.abort(new Error(`Attempt ${attempt} was ended by the Temporal server (${why})`));

  /**
   * Whether the server may have ended the attempt and cannot be asked: the questions have gone unanswered for
   * HOLD_UNANSWERED_MS of asking (a shorter blip is waited out: the span counts from the first unanswered question to the
   * last one asked, not to now, attack49-blip-under-20s-fails-attempt), and a heartbeat timeout has passed since the
   * making of the last heartbeat it is known to have, or since the attempt's start without one (from a send's own start,
   * a first send cut off after a long read waited 32 s past the server's end, attack48-first-hold-outlives-ended-attempt;
   * and a confirmation can be old after a long read that asked nothing, attack48-blip-after-long-read).
   */
  const unreachable = () =>
    unansweredSince !== undefined &&
    lastUnansweredAt - unansweredSince >= HOLD_UNANSWERED_MS &&
    performance.now() - (until === -Infinity ? attemptStartedAt : until + LEASE_MARGIN_MS - heartbeatTimeoutMs) >=
      heartbeatTimeoutMs;
  const unreachableError = () =>
    new Error(
      `Attempt ${attempt} has no heartbeat the Temporal server confirmed for its heartbeat timeout (${heartbeatTimeoutMs} ms: Temporal unreachable); its send gives up`,
    );

  let asking: Promise<void> | undefined;
  const askNow = () =>
    (asking ??= (async () => {
      const askedAt = performance.now();
      try {
        const held = await ask();
        if (!held) return end('no attempt of the activity is pending');
        if (held.attempt !== attempt) return end(`attempt ${held.attempt} is pending`);
        answeredAt = performance.now();
        unansweredSince = undefined;
        if (!isStamped(held.details) || held.details[BEAT].attempt !== attempt) return;
        const recorded = held.details[BEAT].n;
        // The last one kept at or before the recorded heartbeat: made no later than it.
        let i = made.length - 1;
        while (i >= 0 && made[i].n > recorded) i -= 1;
        if (i < 0) return;
        until = Math.max(until, made[i].at + heartbeatTimeoutMs - LEASE_MARGIN_MS);
        made.splice(0, i);
      } catch (err) {
        if ((err as { code?: unknown }).code === GRPC_NOT_FOUND) end((err as Error).message);
        // Otherwise no answer (Temporal unreachable): the lease does not grow.
        else {
          if (unansweredSince === undefined || askedAt - lastUnansweredAt > HOLD_UNANSWERED_MS)
            unansweredSince = askedAt;
          lastUnansweredAt = askedAt;
        }
      } finally {
        asking = undefined;
      }
    })());

  const lease: AttemptLease = {
    until: () => until,
    async hold(ms, holdSignal) {
      if (heartbeatTimeoutMs < leaseHeartbeatTimeoutMs(ms)) {
        throw new Error(
          `A heartbeat timeout of ${heartbeatTimeoutMs} ms can never hold a lease of ${ms} ms (at least ${leaseHeartbeatTimeoutMs(ms)} ms is needed: its activity options are wrong)`,
        );
      }
      stamping = true;
      const stop = holdSignal ? eitherSignal(signal, holdSignal) : signal;
      // Once the server may have ended the attempt and cannot be asked (unreachable), the hold gives up: the attempt
      // fails, its retry sends the page.
      for (let pause = HOLD_PAUSE_FIRST_MS; ; pause = Math.min(pause * 2, HOLD_PAUSE_MAX_MS)) {
        stop.throwIfAborted();
        if (until - performance.now() >= ms) return;
        renew();
        await within(askNow(), Infinity, stop);
        stop.throwIfAborted();
        if (until - performance.now() >= ms) return;
        if (unreachable()) throw unreachableError();
        await within(new Promise((resolve) => setTimeout(resolve, pause)), Infinity, stop);
      }
    },
  };
  return {
    heartbeat,
    keepAlive: () => {
      if (signal.aborted) return;
      // Called only while a page's send is under way: its lease is what keeps it alive.
      stamping = true;
      renew();
      // A wait before the hold (a barrier or producer slot) ends as a hold would: its attempt over on this side too
      // (the activity's own heartbeats kept the SDK's timer from ending it, attack49-slot-wait-outlives-cut-off).
      void askNow().then(() => unreachable() && ended.abort(unreachableError()));
    },
    lease,
    signal,
  };
}

/** The shortest heartbeat timeout that can hold a lease of `ms`: the margin and the heartbeat throttle come off it. */
export function leaseHeartbeatTimeoutMs(ms: number): number {
  return ms + LEASE_MARGIN_MS + HEARTBEAT_THROTTLE_MS;
}

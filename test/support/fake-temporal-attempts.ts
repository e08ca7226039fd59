import type { Context } from '@temporalio/activity';
import { defaultDataConverter } from '@temporalio/common';
import { encodeToPayloads } from '@temporalio/common/lib/internal-non-workflow';
import type { ActivityOptions } from '@temporalio/workflow';
import type { ActivityExecuteInput } from '@temporalio/worker';
import { activityInterceptors } from '../../worker/interceptors';
import { durationMs } from './fake-transactional-kafka';

const ACTIVITY_ID = 'page';

const encode = (details: unknown) => encodeToPayloads(defaultDataConverter, details);

/** One attempt of an activity as the fake server saw it (ms from the server's start). */
export interface FakeAttempt {
  attempt: number;
  startedAt: number;
  /** When the server ended it (timed out, failed, completed). */
  endedAt?: number;
  /** 'completed', 'failed: …', 'timed out (heartbeat)', 'timed out (start-to-close)'. */
  outcome?: string;
  /** When its worker learned (from a heartbeat's answer) that the server had timed it out. */
  abortedAt?: number;
  heartbeats: number[];
}

/**
 * A Temporal server and worker as far as one activity's attempts go (attack45), under fake timers: the server times
 * an attempt out when its heartbeat timeout passes without a heartbeat or its start-to-close timeout passes, and
 * schedules the next attempt after the retry policy's interval. As with the real SDK, the worker learns of a timeout
 * only from the answer to a heartbeat (the activity's cancellation signal aborts then, not at the timeout itself: an
 * activity that does not heartbeat never learns). Each attempt runs through the replay worker's send-attempt
 * interceptors (worker/interceptors.ts), as worker/worker.ts does, and its client answers a describe of the workflow
 * with the pending attempt and the details last recorded (an attempt's lease asks it). `body` gets a Context-like
 * object.
 */
export function fakeActivityServer(
  options: ActivityOptions,
  body: (ctx: Context, attempt: number) => Promise<unknown>,
  {
    maxAttempts = 20,
    lostHeartbeat,
    localTimeoutBufferMs,
  }: {
    maxAttempts?: number;
    /**
     * (attack46) Whether a heartbeat of attempt `attempt` at `at` ms is lost on its way to the server (its worker cut
     * off from Temporal): the server records nothing and the worker gets no answer (sdk-core logs the RPC error).
     */
    lostHeartbeat?: (attempt: number, at: number) => boolean;
    /**
     * (attack46) sdk-core's local activity timers (core's local_timeout_buffer_for_activities, 5 s by default): the
     * worker cancels an attempt itself once its heartbeat timeout plus this passes with no heartbeat report completed
     * (delivered or not: core resets the timer when the RPC ends, either way), or its start-to-close timeout plus this.
     */
    localTimeoutBufferMs?: number;
  } = {},
) {
  const origin = Date.now();
  const now = () => Date.now() - origin;
  const startToCloseMs = durationMs(options.startToCloseTimeout);
  const heartbeatTimeoutMs = options.heartbeatTimeout ? durationMs(options.heartbeatTimeout) : 0;
  const initialMs = durationMs(options.retry?.initialInterval ?? '1s');
  const coefficient = options.retry?.backoffCoefficient ?? 2;
  const maxIntervalMs = durationMs(options.retry?.maximumInterval ?? '100s');
  const attempts: FakeAttempt[] = [];
  let details: unknown;
  /** The attempt the server has pending (started, or scheduled after a failure); undefined once it is all over. */
  let pending: number | undefined = 1;
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => (finish = resolve));

  const start = (n: number) => {
    const record: FakeAttempt = { attempt: n, startedAt: now(), heartbeats: [] };
    attempts.push(record);
    const controller = new AbortController();
    let lastBeat = now();
    let lastReport = now();
    const abort = (reason: string) => {
      if (controller.signal.aborted) return;
      record.abortedAt = now();
      controller.abort(new Error(reason));
    };
    const local =
      localTimeoutBufferMs === undefined
        ? undefined
        : setInterval(() => {
            if (heartbeatTimeoutMs > 0 && now() - lastReport > heartbeatTimeoutMs + localTimeoutBufferMs) {
              abort('TimedOut (local heartbeat timer)');
            } else if (now() - record.startedAt > startToCloseMs + localTimeoutBufferMs) {
              abort('TimedOut (local start-to-close timer)');
            }
          }, 100);
    const end = (outcome: string) => {
      if (record.outcome) return false;
      record.outcome = outcome;
      record.endedAt = now();
      clearInterval(watch);
      pending = outcome !== 'completed' && n < maxAttempts ? n + 1 : undefined;
      if (outcome === 'completed') finish();
      else if (n < maxAttempts) {
        setTimeout(() => start(n + 1), Math.min(initialMs * coefficient ** (n - 1), maxIntervalMs));
      } else finish();
      return true;
    };
    const watch = setInterval(() => {
      if (heartbeatTimeoutMs > 0 && now() - lastBeat > heartbeatTimeoutMs) end('timed out (heartbeat)');
      else if (now() - record.startedAt > startToCloseMs) end('timed out (start-to-close)');
    }, 100);
    const ctx = {
      info: {
        attempt: n,
        // Scheduled when it started here (the retry's interval passes before start): later for every attempt.
        currentAttemptScheduledTimestampMs: Date.now(),
        startToCloseTimeoutMs: startToCloseMs,
        heartbeatTimeoutMs,
        heartbeatDetails: details,
        workflowExecution: { workflowId: 'range-replay-wf', runId: 'run' },
        workflowNamespace: 'default',
        activityId: ACTIVITY_ID,
      },
      cancellationSignal: controller.signal,
      // The worker's client, as far as an attempt's lease asks it (a describe of the workflow); cut off with the
      // attempt's heartbeats (lostHeartbeat).
      client: {
        options: { loadedDataConverter: defaultDataConverter },
        withDeadline: <R>(_deadline: number, fn: () => Promise<R>) => fn(),
        workflowService: {
          describeWorkflowExecution: async () => {
            if (lostHeartbeat?.(n, now())) {
              throw Object.assign(new Error('14 UNAVAILABLE: the frontend is unreachable'), { code: 14 });
            }
            return {
              pendingActivities:
                pending === undefined
                  ? []
                  : [
                      {
                        activityId: ACTIVITY_ID,
                        attempt: pending,
                        heartbeatDetails: details === undefined ? undefined : { payloads: await encode(details) },
                      },
                    ],
            };
          },
        },
      },
      heartbeat: (d?: unknown) => {
        lastReport = now();
        if (lostHeartbeat?.(n, now())) return;
        if (record.outcome) {
          // The heartbeat's answer: the server no longer knows the attempt; the SDK cancels it.
          if (!controller.signal.aborted) {
            record.abortedAt = now();
            controller.abort(new Error(`activity ${record.outcome}`));
          }
          return;
        }
        lastBeat = now();
        record.heartbeats.push(lastBeat);
        details = d;
      },
    } as unknown as Context;
    // The replay worker's activity interceptors, the first outermost (as the SDK composes them).
    const run = activityInterceptors
      .map((factory) => factory(ctx).inbound)
      .reduceRight<(input: ActivityExecuteInput) => Promise<unknown>>(
        (next, inbound) => (input) => (inbound?.execute ? inbound.execute(input, next) : next(input)),
        () => body(ctx, n),
      );
    void run({ args: [], headers: {} })
      .then(
        () => end('completed'),
        (err: Error) => end(`failed: ${err.message}`),
      )
      .finally(() => clearInterval(local));
  };
  start(1);
  return { attempts, finished, now };
}

/** The sends an attempt began after the server had ended it (its retry may already have started), described. */
export function lateSends(attempts: FakeAttempt[], sends: { attempt: number; at: number }[]): string[] {
  return sends.flatMap(({ attempt, at }) => {
    const a = attempts[attempt - 1];
    return a.endedAt !== undefined && a.endedAt <= at
      ? [
          `attempt ${attempt} (${a.outcome} at ${a.endedAt / 1000} s, ${a.heartbeats.length} heartbeats) sent at ${at / 1000} s`,
        ]
      : [];
  });
}

/**
 * (attack47, attack48) `body`'s page attempts on pageOptions-like `options`, attempt 1's worker cut off from the
 * Temporal frontend from `cutFromMs` on for good (sdk-core's local timers on), run for `runForMs`: how attempt 1 ended
 * at the server, and whether its own run ended within the heartbeat timeout and the SDK's local buffer of its last
 * recorded heartbeat (else when, after how many heartbeats and describes into the void).
 */
export async function cutOffFirstAttempt(
  options: ActivityOptions,
  body: (ctx: Context, attempt: number) => Promise<unknown>,
  { cutFromMs, runForMs }: { cutFromMs: number; runForMs: number },
) {
  let firstEnded: number | undefined;
  const calls: number[] = [];
  const server = fakeActivityServer(
    options,
    async (ctx, attempt) => {
      try {
        return await body(ctx, attempt);
      } finally {
        if (attempt === 1) firstEnded = server.now();
      }
    },
    {
      localTimeoutBufferMs: 5_000,
      lostHeartbeat: (attempt, at) => {
        const lost = attempt === 1 && at >= cutFromMs;
        if (lost) calls.push(at);
        return lost;
      },
    },
  );
  await jest.advanceTimersByTimeAsync(runForMs);
  await server.finished;
  const first = server.attempts[0];
  const lastRecorded = first.heartbeats.at(-1)!;
  // Heartbeats and describes attempt 1 sent into the void after the server had ended it.
  const void_ = calls.filter((at) => at >= first.endedAt!).length;
  return {
    first: `${first.outcome} at ${first.endedAt! / 1000} s (last heartbeat recorded at ${lastRecorded / 1000} s)`,
    // By then the server has ended it for certain, and core's local heartbeat timer would have cancelled it (heartbeat
    // timeout + its 5 s buffer) had nothing been heartbeated into the void.
    sendEnded:
      firstEnded! <= lastRecorded + durationMs(options.heartbeatTimeout!) + 5_000
        ? 'within the heartbeat timeout and its local buffer'
        : `at ${firstEnded! / 1000} s, after ${void_} heartbeats and describes into the void`,
  };
}

/**
 * How a cut-off attempt 1 ends at the server: timed out by its heartbeat timeout, or failed on its side just before
 * (its lease gave up: Temporal unreachable for a heartbeat timeout past its last confirmed heartbeat).
 */
export const timedOutOrGaveUp = (): unknown =>
  expect.stringMatching(/^(timed out \(heartbeat\)|failed: Attempt 1 has no heartbeat the Temporal server confirmed)/);

/** Each attempt as `n (start-end s): outcome`. */
export const attemptLines = (attempts: FakeAttempt[]): string[] =>
  attempts.map((a) => `${a.attempt} (${a.startedAt / 1000}-${a.endedAt! / 1000} s): ${a.outcome}`);
